/* Unit tests for core/loader.c with the build tree's real plugins: search path, lookup, refusals and the ABI gate. */
#include "loader.h"

#include <check.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* Per-test temporary folder and the build tree's plugin folder (Check forks each test). */
typedef struct fixture {
    char tmp[256];
    char plugins[PATH_MAX]; /* EW_TEST_BUILD_DIR/plugins */
    char err[1200];
} fixture;

static fixture fx;

/* snprintf that fails the test instead of cutting the text. */
static void s_fmt(char *out, size_t len, const char *fmt, ...) EW_PRINTF(3, 4);

static void s_fmt(char *out, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, len, fmt, ap);
    va_end(ap);
    ck_assert_msg(n >= 0 && (size_t)n < len, "text does not fit in %zu bytes", len);
}

static int s_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void s_setup(void)
{
    const char *build = getenv("EW_TEST_BUILD_DIR");
    ck_assert_msg(build && *build, "EW_TEST_BUILD_DIR is not set: run through meson test");
    s_fmt(fx.plugins, sizeof fx.plugins, "%s/plugins", build);
    const char *tmp = getenv("TMPDIR");
    s_fmt(fx.tmp, sizeof fx.tmp, "%s/ew-test-loader-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(fx.tmp));
    fx.err[0] = '\0';
    unsetenv("EDGEWATCH_PLUGIN_PATH");
}

static void s_teardown(void)
{
    chmod(fx.tmp, 0700);
    nftw(fx.tmp, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Copies src to dst with mode (chmod'ed after, so the umask does not interfere). */
static void s_copy(const char *src, const char *dst, mode_t mode)
{
    int in = open(src, O_RDONLY);
    ck_assert_msg(in >= 0, "cannot open %s", src);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_msg(out >= 0, "cannot create %s", dst);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        ck_assert_int_eq(write(out, buf, (size_t)n), n);
    ck_assert_int_eq(n, 0);
    close(in);
    close(out);
    ck_assert_int_eq(chmod(dst, mode), 0);
}

/* The build tree's file of a plugin: plugins/<name>/<kind>_<name>.so. */
static void s_build_file(char *out, size_t len, const char *kind, const char *name)
{
    s_fmt(out, len, "%s/%s/%s_%s.so", fx.plugins, name, kind, name);
}

/* A search path of exactly the given folders (no environment, no built-in folder). */
static void s_path_of(loader_path *lp, const char *const *dirs, size_t n)
{
    lp->count = n;
    lp->dirs = calloc(n, sizeof *lp->dirs);
    ck_assert_ptr_nonnull(lp->dirs);
    for (size_t i = 0; i < n; i++)
        lp->dirs[i] = strdup(dirs[i]);
}

START_TEST(test_path_init_order)
{
    loader_path lp;
    setenv("EDGEWATCH_PLUGIN_PATH", "/env/one::/env/two", 1);
    ck_assert_int_eq(loader_path_init(&lp, "/cfg/a:/cfg/b:"), 0);
    ck_assert_uint_eq(lp.count, 5);
    ck_assert_str_eq(lp.dirs[0], "/cfg/a");
    ck_assert_str_eq(lp.dirs[1], "/cfg/b");
    ck_assert_str_eq(lp.dirs[2], "/env/one");
    ck_assert_str_eq(lp.dirs[3], "/env/two");
    ck_assert_str_eq(lp.dirs[4], EW_PLUGIN_DIR);
    loader_path_free(&lp);
    ck_assert_ptr_null(lp.dirs);
    ck_assert_uint_eq(lp.count, 0);

    unsetenv("EDGEWATCH_PLUGIN_PATH");
    ck_assert_int_eq(loader_path_init(&lp, NULL), 0);
    ck_assert_uint_eq(lp.count, 1);
    ck_assert_str_eq(lp.dirs[0], EW_PLUGIN_DIR);
    loader_path_free(&lp);

    setenv("EDGEWATCH_PLUGIN_PATH", "", 1);
    ck_assert_int_eq(loader_path_init(&lp, ""), 0);
    ck_assert_uint_eq(lp.count, 1);
    ck_assert_str_eq(lp.dirs[0], EW_PLUGIN_DIR);
    loader_path_free(&lp);
}
END_TEST

START_TEST(test_file_name)
{
    char name[64];
    loader_file_name(EW_KIND_SOURCE, "synth", name, sizeof name);
    ck_assert_str_eq(name, "source_synth.so");
    loader_file_name(EW_KIND_DETECTOR, "zscore", name, sizeof name);
    ck_assert_str_eq(name, "detector_zscore.so");
    loader_file_name(EW_KIND_SINK, "jsonl", name, sizeof name);
    ck_assert_str_eq(name, "sink_jsonl.so");
}
END_TEST

START_TEST(test_open_build_plugins)
{
    static const struct {
        ew_kind kind;
        const char *kind_name, *name;
    } want[] = {{EW_KIND_SOURCE, "source", "synth"},
                {EW_KIND_SOURCE, "source", "csv"},
                {EW_KIND_DETECTOR, "detector", "zscore"},
                {EW_KIND_SINK, "sink", "jsonl"},
                {EW_KIND_SINK, "sink", "null"}};
    loader_path lp;
    ck_assert_int_eq(loader_path_init(&lp, fx.plugins), 0);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        loaded_plugin p;
        int rc = loader_open(&lp, want[i].kind, want[i].name, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err);
        ck_assert_msg(rc == 0, "%s %s: %s", want[i].kind_name, want[i].name, fx.err);
        /* Found one level down, in the build tree's plugins/<name>/. */
        char path[PATH_MAX];
        s_build_file(path, sizeof path, want[i].kind_name, want[i].name);
        ck_assert_str_eq(p.path, path);
        ck_assert_ptr_nonnull(p.handle);
        ck_assert_int_eq(p.desc->kind, want[i].kind);
        ck_assert_str_eq(p.desc->name, want[i].name);
        ck_assert_uint_eq(p.desc->abi_major, EW_ABI_MAJOR);
        ck_assert_uint_le(p.desc->abi_minor, EW_ABI_MINOR);
        ck_assert_uint_eq(p.desc->struct_size, sizeof(ew_plugin));
        ck_assert_ptr_nonnull(p.desc->init);
        loader_close(&p);
        ck_assert_ptr_null(p.handle);
        ck_assert_ptr_null(p.desc);
    }
    loader_path_free(&lp);
    loader_close(NULL);
}
END_TEST

START_TEST(test_find_direct_and_one_level_down)
{
    char src[PATH_MAX], dst[PATH_MAX], sub[PATH_MAX], deep[PATH_MAX];
    s_build_file(src, sizeof src, "detector", "zscore");
    /* Directly in the folder. */
    s_fmt(dst, sizeof dst, "%s/detector_zscore.so", fx.tmp);
    s_copy(src, dst, 0644);
    const char *dirs[] = {fx.tmp};
    loader_path lp;
    s_path_of(&lp, dirs, 1);
    loaded_plugin p;
    ck_assert_int_eq(loader_open(&lp, EW_KIND_DETECTOR, "zscore", EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), 0);
    ck_assert_str_eq(p.path, dst);
    loader_close(&p);
    unlink(dst);
    /* In a sub-folder named like the plugin. */
    s_fmt(sub, sizeof sub, "%s/zscore", fx.tmp);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    s_fmt(dst, sizeof dst, "%s/detector_zscore.so", sub);
    s_copy(src, dst, 0644);
    ck_assert_int_eq(loader_open(&lp, EW_KIND_DETECTOR, "zscore", EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), 0);
    ck_assert_str_eq(p.path, dst);
    loader_close(&p);
    unlink(dst);
    rmdir(sub);
    /* Two levels down is not searched. */
    s_fmt(deep, sizeof deep, "%s/x", fx.tmp);
    ck_assert_int_eq(mkdir(deep, 0755), 0);
    s_fmt(sub, sizeof sub, "%s/x/zscore", fx.tmp);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    s_fmt(dst, sizeof dst, "%s/detector_zscore.so", sub);
    s_copy(src, dst, 0644);
    ck_assert_int_eq(loader_open(&lp, EW_KIND_DETECTOR, "zscore", EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
    ck_assert_ptr_nonnull(strstr(fx.err, "no detector plugin \"zscore\""));
    loader_path_free(&lp);
}
END_TEST

START_TEST(test_first_folder_wins)
{
    char src[PATH_MAX], dst[PATH_MAX];
    s_build_file(src, sizeof src, "sink", "null");
    s_fmt(dst, sizeof dst, "%s/sink_null.so", fx.tmp);
    s_copy(src, dst, 0644);
    const char *dirs[] = {fx.tmp, fx.plugins};
    loader_path lp;
    s_path_of(&lp, dirs, 2);
    loaded_plugin p;
    ck_assert_int_eq(loader_open(&lp, EW_KIND_SINK, "null", EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), 0);
    ck_assert_str_eq(p.path, dst);
    loader_close(&p);
    loader_path_free(&lp);
    const char *dirs2[] = {fx.plugins, fx.tmp};
    s_path_of(&lp, dirs2, 2);
    ck_assert_int_eq(loader_open(&lp, EW_KIND_SINK, "null", EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), 0);
    s_build_file(dst, sizeof dst, "sink", "null");
    ck_assert_str_eq(p.path, dst);
    loader_close(&p);
    loader_path_free(&lp);
}
END_TEST

START_TEST(test_kind_mismatch)
{
    loader_path lp;
    ck_assert_int_eq(loader_path_init(&lp, fx.plugins), 0);
    loaded_plugin p;
    ck_assert_int_eq(loader_open(&lp, EW_KIND_SINK, "synth", EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
    ck_assert_str_eq(fx.err, "plugin \"synth\" is a source, not a sink: use it in a [source.NAME] section");
    ck_assert_ptr_null(p.handle);
    ck_assert_int_eq(loader_open(&lp, EW_KIND_DETECTOR, "jsonl", EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
    ck_assert_str_eq(fx.err, "plugin \"jsonl\" is a sink, not a detector: use it in a [sink.NAME] section");
    ck_assert_int_eq(loader_open(&lp, EW_KIND_SOURCE, "zscore", EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
    ck_assert_str_eq(fx.err, "plugin \"zscore\" is a detector, not a source: use it in a [detector.NAME] section");
    loader_path_free(&lp);
}
END_TEST

START_TEST(test_not_found)
{
    setenv("EDGEWATCH_PLUGIN_PATH", "/nonexistent/ew-env", 1);
    loader_path lp;
    ck_assert_int_eq(loader_path_init(&lp, fx.plugins), 0);
    loaded_plugin p;
    ck_assert_int_eq(loader_open(&lp, EW_KIND_SOURCE, "modbus_x", EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
    char want[2000];
    s_fmt(want, sizeof want,
             "no source plugin \"modbus_x\" (file source_modbus_x.so) in: %s /nonexistent/ew-env %s; run "
             "`edgewatch plugins` to list what is installed, or add its folder to plugin_path",
             fx.plugins, EW_PLUGIN_DIR);
    ck_assert_str_eq(fx.err, want);
    /* A short buffer is cut, never overrun. */
    char small[40];
    ck_assert_int_eq(loader_open(&lp, EW_KIND_SOURCE, "modbus_x", EW_ABI_MAJOR, EW_ABI_MINOR, &p, small, sizeof small), -1);
    ck_assert_uint_eq(strlen(small), sizeof small - 1);
    ck_assert_int_eq(strncmp(small, want, sizeof small - 1), 0);
    loader_path_free(&lp);
}
END_TEST

START_TEST(test_name_differs_from_file)
{
    char src[PATH_MAX], dst[PATH_MAX];
    s_build_file(src, sizeof src, "source", "synth");
    s_fmt(dst, sizeof dst, "%s/source_other.so", fx.tmp);
    s_copy(src, dst, 0644);
    const char *dirs[] = {fx.tmp};
    loader_path lp;
    s_path_of(&lp, dirs, 1);
    loaded_plugin p;
    ck_assert_int_eq(loader_open(&lp, EW_KIND_SOURCE, "other", EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
    char want[PATH_MAX + 200];
    s_fmt(want, sizeof want, "plugin file %s declares itself as source \"synth\", not source \"other\"", dst);
    ck_assert_str_eq(fx.err, want);
    ck_assert_ptr_null(p.handle);
    loader_path_free(&lp);
}
END_TEST

START_TEST(test_world_writable_file)
{
    char src[PATH_MAX], dst[PATH_MAX];
    s_build_file(src, sizeof src, "source", "synth");
    s_fmt(dst, sizeof dst, "%s/source_synth.so", fx.tmp);
    s_copy(src, dst, 0666);
    loaded_plugin p;
    ck_assert_int_eq(loader_open_file(dst, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
    char want[3 * PATH_MAX];
    s_fmt(want, sizeof want,
          "refusing plugin file %s: it is writable by every user (mode 0666), so they could run code in "
          "edgewatch; fix with: chmod go-w %s",
          dst, dst);
    ck_assert_str_eq(fx.err, want);
    ck_assert_ptr_null(p.handle);
    /* Through the search path too. */
    const char *dirs[] = {fx.tmp};
    loader_path lp;
    s_path_of(&lp, dirs, 1);
    ck_assert_int_eq(loader_open(&lp, EW_KIND_SOURCE, "synth", EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
    ck_assert_str_eq(fx.err, want);
    /* The file may not be writable by its group either. */
    ck_assert_int_eq(chmod(dst, 0664), 0);
    ck_assert_int_eq(loader_open(&lp, EW_KIND_SOURCE, "synth", EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
    s_fmt(want, sizeof want,
          "refusing plugin file %s: it is writable by its group (mode 0664), so they could run code in "
          "edgewatch; fix with: chmod go-w %s",
          dst, dst);
    ck_assert_str_eq(fx.err, want);
    ck_assert_int_eq(chmod(dst, 0755), 0);
    ck_assert_int_eq(loader_open(&lp, EW_KIND_SOURCE, "synth", EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), 0);
    loader_close(&p);
    loader_path_free(&lp);
}
END_TEST

START_TEST(test_world_writable_folder)
{
    char src[PATH_MAX], dst[PATH_MAX];
    s_build_file(src, sizeof src, "source", "synth");
    s_fmt(dst, sizeof dst, "%s/source_synth.so", fx.tmp);
    s_copy(src, dst, 0644);
    loaded_plugin p;
    ck_assert_int_eq(loader_open_file(dst, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), 0);
    loader_close(&p);
    static const mode_t modes[] = {0777, 01777};
    static const char *const shown[] = {"0777", "1777"};
    for (size_t i = 0; i < 2; i++) {
        ck_assert_int_eq(chmod(fx.tmp, modes[i]), 0);
        ck_assert_int_eq(loader_open_file(dst, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
        char want[3 * PATH_MAX];
        s_fmt(want, sizeof want,
              "refusing plugin folder %s (holding %s): it is writable by every user (mode %s), so they could "
              "run code in edgewatch; fix with: chmod go-w %s",
              fx.tmp, dst, shown[i], fx.tmp);
        ck_assert_str_eq(fx.err, want);
        ck_assert_ptr_null(p.handle);
    }
    /* Its group may not write the plugin's folder either: they could swap the file. */
    ck_assert_int_eq(chmod(fx.tmp, 0770), 0);
    ck_assert_int_eq(loader_open_file(dst, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
    ck_assert_ptr_null(p.handle);
    ck_assert_int_eq(chmod(fx.tmp, 0750), 0);
    ck_assert_int_eq(loader_open_file(dst, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), 0);
    loader_close(&p);
    ck_assert_int_eq(chmod(fx.tmp, 0700), 0);
}
END_TEST

/* A symlink does not launder a plugin: the loader checks the file the link
 * resolves to, and the folders above it (issue 14 item 7). */
START_TEST(test_symlink_into_writable_folder)
{
    char src[PATH_MAX], pub[PATH_MAX], real[PATH_MAX], safe[PATH_MAX], link[PATH_MAX];
    s_build_file(src, sizeof src, "source", "synth");
    s_fmt(pub, sizeof pub, "%s/pub", fx.tmp);
    s_fmt(safe, sizeof safe, "%s/safe", fx.tmp);
    ck_assert_int_eq(mkdir(pub, 0755), 0);
    ck_assert_int_eq(mkdir(safe, 0755), 0);
    s_fmt(real, sizeof real, "%s/source_synth.so", pub);
    s_copy(src, real, 0644);
    ck_assert_int_eq(chmod(pub, 0777), 0);
    s_fmt(link, sizeof link, "%s/source_synth.so", safe);
    ck_assert_int_eq(symlink(real, link), 0);
    loaded_plugin p;
    ck_assert_int_eq(loader_open_file(link, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
    char want[3 * PATH_MAX];
    s_fmt(want, sizeof want,
          "refusing plugin folder %s (holding %s): it is writable by every user (mode 0777), so they could "
          "run code in edgewatch; fix with: chmod go-w %s",
          pub, link, pub);
    ck_assert_str_eq(fx.err, want);
    ck_assert_ptr_null(p.handle);
    /* A world-writable file behind a link in a safe folder is refused too. */
    ck_assert_int_eq(chmod(pub, 0755), 0);
    ck_assert_int_eq(chmod(real, 0666), 0);
    ck_assert_int_eq(loader_open_file(link, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
    s_fmt(want, sizeof want,
          "refusing plugin file %s (linked from %s): it is writable by every user (mode 0666), so they could "
          "run code in edgewatch; fix with: chmod go-w %s",
          real, link, real);
    ck_assert_str_eq(fx.err, want);
    ck_assert_int_eq(chmod(real, 0644), 0);
    ck_assert_int_eq(loader_open_file(link, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), 0);
    loader_close(&p);
}
END_TEST

/* A writable folder anywhere above the plugin lets its users rename the
 * plugin's folder away and put their own in its place. */
START_TEST(test_writable_parent_folder)
{
    char src[PATH_MAX], mid[PATH_MAX], leaf[PATH_MAX], dst[PATH_MAX];
    s_build_file(src, sizeof src, "source", "synth");
    s_fmt(mid, sizeof mid, "%s/mid", fx.tmp);
    s_fmt(leaf, sizeof leaf, "%s/mid/leaf", fx.tmp);
    ck_assert_int_eq(mkdir(mid, 0755), 0);
    ck_assert_int_eq(mkdir(leaf, 0755), 0);
    s_fmt(dst, sizeof dst, "%s/source_synth.so", leaf);
    s_copy(src, dst, 0644);
    loaded_plugin p;
    ck_assert_int_eq(loader_open_file(dst, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), 0);
    loader_close(&p);
    static const mode_t modes[] = {0777, 0775};
    static const char *const shown[] = {"0777", "0775"};
    static const char *const who[] = {"every user", "its group"};
    for (size_t i = 0; i < 2; i++) {
        ck_assert_int_eq(chmod(mid, modes[i]), 0);
        ck_assert_int_eq(loader_open_file(dst, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
        char want[3 * PATH_MAX];
        s_fmt(want, sizeof want,
              "refusing plugin folder %s (holding %s): it is writable by %s (mode %s), so they could "
              "run code in edgewatch; fix with: chmod go-w %s",
              mid, dst, who[i], shown[i], mid);
        ck_assert_str_eq(fx.err, want);
        ck_assert_ptr_null(p.handle);
    }
    /* A sticky folder owned by root (like /tmp) is safe above the plugin's own
     * folder: others cannot rename what they do not own. */
    if (geteuid() == 0) {
        ck_assert_int_eq(chmod(mid, 01777), 0);
        ck_assert_int_eq(loader_open_file(dst, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), 0);
        loader_close(&p);
    }
    ck_assert_int_eq(chmod(mid, 0755), 0);
}
END_TEST

/* A plugin or folder owned by another user who is not root is theirs to change. */
START_TEST(test_owned_by_other_user)
{
    if (geteuid() != 0)
        return; /* only root can give a file away */
    char src[PATH_MAX], dir[PATH_MAX], dst[PATH_MAX];
    s_build_file(src, sizeof src, "source", "synth");
    s_fmt(dir, sizeof dir, "%s/d", fx.tmp);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    s_fmt(dst, sizeof dst, "%s/source_synth.so", dir);
    s_copy(src, dst, 0644);
    ck_assert_int_eq(chown(dst, 65534, (gid_t)-1), 0);
    loaded_plugin p;
    ck_assert_int_eq(loader_open_file(dst, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
    char want[3 * PATH_MAX];
    s_fmt(want, sizeof want,
          "refusing plugin file %s: it is owned by user 65534, neither root nor the user "
          "edgewatch runs as (%u), who could change it; fix with: chown root %s",
          dst, (unsigned)geteuid(), dst);
    ck_assert_str_eq(fx.err, want);
    ck_assert_int_eq(chown(dst, 0, (gid_t)-1), 0);
    ck_assert_int_eq(chown(dir, 65534, (gid_t)-1), 0);
    ck_assert_int_eq(loader_open_file(dst, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
    s_fmt(want, sizeof want,
          "refusing plugin folder %s (holding %s): it is owned by user 65534, neither root nor the user "
          "edgewatch runs as (%u), who could change it; fix with: chown root %s",
          dir, dst, (unsigned)geteuid(), dir);
    ck_assert_str_eq(fx.err, want);
    ck_assert_int_eq(chown(dir, 0, (gid_t)-1), 0);
    ck_assert_int_eq(loader_open_file(dst, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), 0);
    loader_close(&p);
}
END_TEST

START_TEST(test_not_a_plugin)
{
    /* A real shared library without the entry symbol: a copy of the zlib this test links. */
    Dl_info info;
    ck_assert_int_ne(dladdr((void *)zlibVersion, &info), 0);
    ck_assert_ptr_nonnull(info.dli_fname);
    char dst[PATH_MAX];
    s_fmt(dst, sizeof dst, "%s/source_zlib.so", fx.tmp);
    s_copy(info.dli_fname, dst, 0644);
    loaded_plugin p;
    ck_assert_int_eq(loader_open_file(dst, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
    char want[PATH_MAX + 200];
    s_fmt(want, sizeof want,
             "%s is not an edgewatch plugin: it exports no ew_plugin_entry() (define it with EW_PLUGIN_EXPORT)", dst);
    ck_assert_str_eq(fx.err, want);
    ck_assert_ptr_null(p.handle);

    /* Not a shared object at all. */
    s_fmt(dst, sizeof dst, "%s/source_text.so", fx.tmp);
    FILE *f = fopen(dst, "w");
    ck_assert_ptr_nonnull(f);
    fputs("this is not ELF\n", f);
    fclose(f);
    ck_assert_int_eq(loader_open_file(dst, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
    s_fmt(want, sizeof want, "cannot load plugin %s: ", dst);
    ck_assert_msg(strncmp(fx.err, want, strlen(want)) == 0, "%s", fx.err);

    /* Missing, and not a regular file. */
    s_fmt(dst, sizeof dst, "%s/source_missing.so", fx.tmp);
    ck_assert_int_eq(loader_open_file(dst, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
    s_fmt(want, sizeof want, "cannot read plugin %s: No such file or directory", dst);
    ck_assert_str_eq(fx.err, want);
    s_fmt(dst, sizeof dst, "%s/source_dir.so", fx.tmp);
    ck_assert_int_eq(mkdir(dst, 0755), 0);
    ck_assert_int_eq(loader_open_file(dst, EW_ABI_MAJOR, EW_ABI_MINOR, &p, fx.err, sizeof fx.err), -1);
    s_fmt(want, sizeof want, "plugin %s is not a regular file", dst);
    ck_assert_str_eq(fx.err, want);
}
END_TEST

START_TEST(test_abi_gate)
{
    char path[PATH_MAX];
    s_build_file(path, sizeof path, "detector", "zscore");
    loaded_plugin p;
    /* Built with this SDK (1.2): this host loads it, and so does one of a newer minor. */
    ck_assert_int_eq(loader_open_file(path, 1, 2, &p, fx.err, sizeof fx.err), 0);
    ck_assert_uint_eq(p.desc->abi_major, EW_ABI_MAJOR);
    ck_assert_uint_eq(p.desc->abi_minor, EW_ABI_MINOR);
    loader_close(&p);
    ck_assert_int_eq(loader_open_file(path, 1, 3, &p, fx.err, sizeof fx.err), 0);
    ck_assert_str_eq(p.path, path);
    loader_close(&p);
    /* A host of an older minor refuses it, naming the file and both versions. */
    ck_assert_int_eq(loader_open_file(path, 1, 1, &p, fx.err, sizeof fx.err), -1);
    char want[PATH_MAX + 400];
    s_fmt(want, sizeof want,
             "plugin %s needs plugin ABI 1.2, newer than the ABI 1.1 of this edgewatch: upgrade edgewatch or "
             "rebuild the plugin against this version's SDK",
             path);
    ck_assert_str_eq(fx.err, want);
    ck_assert_ptr_null(p.handle);
    /* Another major is refused too. */
    ck_assert_int_eq(loader_open_file(path, 2, 0, &p, fx.err, sizeof fx.err), -1);
    s_fmt(want, sizeof want,
             "plugin %s was built for plugin ABI 1.2, but this edgewatch provides ABI 2.0: majors differ, so it "
             "is not binary compatible; rebuild the plugin against the edgewatch-plugin SDK of this version",
             path);
    ck_assert_str_eq(fx.err, want);
    ck_assert_ptr_null(p.handle);
    ck_assert_int_eq(loader_open_file(path, 0, 7, &p, fx.err, sizeof fx.err), -1);
    ck_assert_ptr_nonnull(strstr(fx.err, "built for plugin ABI 1.2, but this edgewatch provides ABI 0.7"));
    /* Through the search path as well. */
    loader_path lp;
    ck_assert_int_eq(loader_path_init(&lp, fx.plugins), 0);
    ck_assert_int_eq(loader_open(&lp, EW_KIND_DETECTOR, "zscore", 2, 1, &p, fx.err, sizeof fx.err), -1);
    ck_assert_ptr_nonnull(strstr(fx.err, path));
    ck_assert_ptr_nonnull(strstr(fx.err, "ABI 1.2"));
    ck_assert_ptr_nonnull(strstr(fx.err, "ABI 2.1"));
    loader_path_free(&lp);
}
END_TEST

/* What loader_list reported. */
typedef struct listed {
    char lines[32][PATH_MAX + 40];
    size_t n;
    char bad[8][PATH_MAX + 600];
    size_t n_bad;
} listed;

static void s_on_plugin(void *ctx, const loaded_plugin *p)
{
    listed *l = ctx;
    ck_assert_uint_lt(l->n, 32);
    ck_assert_ptr_nonnull(p->handle);
    s_fmt(l->lines[l->n++], sizeof l->lines[0], "%d %s %s", (int)p->desc->kind, p->desc->name, p->path);
}

static void s_on_bad(void *ctx, const char *path, const char *why)
{
    listed *l = ctx;
    ck_assert_uint_lt(l->n_bad, 8);
    s_fmt(l->bad[l->n_bad++], sizeof l->bad[0], "%s | %s", path, why);
}

/* How many reported lines start with "kind name ". */
static size_t s_count(const listed *l, ew_kind kind, const char *name, char *path_out, size_t pathlen)
{
    char prefix[80];
    s_fmt(prefix, sizeof prefix, "%d %s ", (int)kind, name);
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (strncmp(l->lines[i], prefix, strlen(prefix)) == 0) {
            n++;
            s_fmt(path_out, pathlen, "%s", l->lines[i] + strlen(prefix));
        }
    }
    return n;
}

START_TEST(test_list)
{
    /* A folder with a copy of synth (it comes first, so it wins), a broken file and non-plugins. */
    char src[PATH_MAX], dst[PATH_MAX], broken[PATH_MAX];
    s_build_file(src, sizeof src, "source", "synth");
    s_fmt(dst, sizeof dst, "%s/source_synth.so", fx.tmp);
    s_copy(src, dst, 0644);
    s_fmt(broken, sizeof broken, "%s/sink_broken.so", fx.tmp);
    FILE *f = fopen(broken, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not a shared object\n", f);
    fclose(f);
    char other[PATH_MAX];
    s_fmt(other, sizeof other, "%s/notes.txt", fx.tmp);
    f = fopen(other, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    s_fmt(other, sizeof other, "%s/source_.so", fx.tmp);
    f = fopen(other, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);

    const char *dirs[] = {fx.tmp, fx.plugins, "/nonexistent/ew-list"};
    loader_path lp;
    s_path_of(&lp, dirs, 3);
    listed *l = calloc(1, sizeof *l);
    ck_assert_ptr_nonnull(l);
    loader_list(&lp, s_on_plugin, s_on_bad, l);
    loader_path_free(&lp);

    char path[PATH_MAX], want[PATH_MAX];
    ck_assert_uint_eq(s_count(l, EW_KIND_SOURCE, "synth", path, sizeof path), 1);
    ck_assert_str_eq(path, dst);
    static const struct {
        ew_kind kind;
        const char *kind_name, *name;
    } build[] = {{EW_KIND_SOURCE, "source", "csv"},
                 {EW_KIND_DETECTOR, "detector", "zscore"},
                 {EW_KIND_SINK, "sink", "jsonl"},
                 {EW_KIND_SINK, "sink", "null"}};
    for (size_t i = 0; i < sizeof build / sizeof build[0]; i++) {
        ck_assert_msg(s_count(l, build[i].kind, build[i].name, path, sizeof path) == 1, "%s %s listed %zu times",
                      build[i].kind_name, build[i].name, s_count(l, build[i].kind, build[i].name, path, sizeof path));
        s_build_file(want, sizeof want, build[i].kind_name, build[i].name);
        ck_assert_str_eq(path, want);
    }
    /* Only the broken file is reported as bad. */
    ck_assert_uint_eq(l->n_bad, 1);
    s_fmt(want, sizeof want, "%s | cannot load plugin %s: ", broken, broken);
    ck_assert_msg(strncmp(l->bad[0], want, strlen(want)) == 0, "%s", l->bad[0]);
    free(l);
}
END_TEST

static Suite *s_suite(void)
{
    Suite *s = suite_create("loader");
    TCase *tc = tcase_create("loader");
    tcase_add_checked_fixture(tc, s_setup, s_teardown);
    tcase_add_test(tc, test_path_init_order);
    tcase_add_test(tc, test_file_name);
    tcase_add_test(tc, test_open_build_plugins);
    tcase_add_test(tc, test_find_direct_and_one_level_down);
    tcase_add_test(tc, test_first_folder_wins);
    tcase_add_test(tc, test_kind_mismatch);
    tcase_add_test(tc, test_not_found);
    tcase_add_test(tc, test_name_differs_from_file);
    tcase_add_test(tc, test_world_writable_file);
    tcase_add_test(tc, test_world_writable_folder);
    tcase_add_test(tc, test_symlink_into_writable_folder);
    tcase_add_test(tc, test_writable_parent_folder);
    tcase_add_test(tc, test_owned_by_other_user);
    tcase_add_test(tc, test_not_a_plugin);
    tcase_add_test(tc, test_abi_gate);
    tcase_add_test(tc, test_list);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(s_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
