/* Unit tests for core/state.c: round trips, atomic replace, damaged files, folders, names. */
#include "state.h"

#include <edgewatch/plugin.h>

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

/* Temporary folders. Check forks each test, and a failing test exits before its
 * checked teardown, so every test's folder lives under one root that the
 * unchecked teardown (run in the parent) always removes. */
typedef struct fixture {
    char root[256];
    char dir[300];
    char err[512];
} fixture;

static fixture fx;

static int s_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Folders made read-only by a test must become writable again to be emptied. */
static int s_make_writable(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_D || flag == FTW_DNR)
        chmod(path, 0700);
    return 0;
}

static void s_root_setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(fx.root, sizeof fx.root, "%s/ew-test-state-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(fx.root));
}

static void s_root_teardown(void)
{
    nftw(fx.root, s_make_writable, 16, FTW_PHYS);
    nftw(fx.root, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void s_setup(void)
{
    snprintf(fx.dir, sizeof fx.dir, "%s/t-XXXXXX", fx.root);
    ck_assert_ptr_nonnull(mkdtemp(fx.dir));
    fx.err[0] = '\0';
}

static void s_path(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", fx.dir, name);
}

static int s_exists(const char *name)
{
    char p[512];
    s_path(p, sizeof p, name);
    struct stat st;
    return lstat(p, &st) == 0;
}

/* Counts folder entries whose name starts with prefix (".tmp" leftovers, ".corrupt-"). */
static int s_count_entries(const char *dir, const char *contains)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (!contains || strstr(e->d_name, contains))
            n++;
    }
    closedir(d);
    return n;
}

static void s_write_file(const char *name, const void *data, size_t len)
{
    char p[512];
    s_path(p, sizeof p, name);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

/* Reads a whole file into a malloc'd buffer. */
static unsigned char *s_read_file(const char *name, size_t *len)
{
    char p[512];
    s_path(p, sizeof p, name);
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void s_save_sample(const char *name, const char *plugin)
{
    static const char payload[] = "model weights 0123456789";
    ck_assert_msg(
        state_save(fx.dir, name, plugin, payload, sizeof payload, fx.err, sizeof fx.err) == 0,
        "save failed: %s", fx.err);
}

/* Rewrites the header CRC after a test edited bytes 0..27, so only the field under
 * test looks wrong. */
static void s_fix_header_crc(unsigned char *h)
{
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), h, 28);
    for (int i = 0; i < 4; i++)
        h[28 + i] = (unsigned char)(crc >> (8 * i));
}

/* Loads `name` expecting it to be judged corrupt: EW_ENOENT, moved aside, the
 * original gone, one .corrupt- copy present, and err containing `why`. */
static void s_expect_corrupt(const char *name, const char *why)
{
    void *data = (void *)1;
    size_t len = 99;
    int moved = 0;
    fx.err[0] = '\0';
    int rc = state_load(fx.dir, name, "zscore", &data, &len, &moved, fx.err, sizeof fx.err);
    ck_assert_msg(rc == EW_ENOENT, "rc %d, err: %s", rc, fx.err);
    ck_assert_int_eq(moved, 1);
    ck_assert_ptr_null(data);
    ck_assert_uint_eq(len, 0);
    ck_assert_msg(!s_exists(name), "%s still there after being judged corrupt", name);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s.corrupt-", name);
    ck_assert_int_eq(s_count_entries(fx.dir, prefix), 1);
    ck_assert_msg(strstr(fx.err, why), "err '%s' does not say '%s'", fx.err, why);
    ck_assert_msg(strstr(fx.err, "moved aside"), "err '%s' does not say it moved the file", fx.err);
}

START_TEST(test_round_trip)
{
    unsigned char payload[3000];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (unsigned char)(i * 7 + 3);
    ck_assert_int_eq(
        state_save(fx.dir, "model.bin", "zscore", payload, sizeof payload, fx.err, sizeof fx.err),
        0);
    /* The file is exactly header + payload, starting with the documented magic. */
    size_t flen;
    unsigned char *raw = s_read_file("model.bin", &flen);
    ck_assert_uint_eq(flen, STATE_HEADER_SIZE + sizeof payload);
    ck_assert_int_eq(memcmp(raw, "EWSTATE\0", 8), 0);
    ck_assert_int_eq(raw[8], STATE_FORMAT_VERSION);
    ck_assert_int_eq(raw[12], STATE_HEADER_SIZE);
    ck_assert_int_eq(raw[16] | raw[17] << 8, (int)sizeof payload);
    ck_assert_str_eq((const char *)raw + 32, "zscore");
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), payload, sizeof payload);
    ck_assert_uint_eq((uint32_t)raw[24] | (uint32_t)raw[25] << 8 | (uint32_t)raw[26] << 16 |
                          (uint32_t)raw[27] << 24,
                      crc);
    free(raw);

    void *data = NULL;
    size_t len = 0;
    int moved = -1;
    ck_assert_int_eq(
        state_load(fx.dir, "model.bin", "zscore", &data, &len, &moved, fx.err, sizeof fx.err), 0);
    ck_assert_int_eq(moved, 0);
    ck_assert_uint_eq(len, sizeof payload);
    ck_assert_int_eq(memcmp(data, payload, len), 0);
    free(data);
    /* No temporary file is left behind. */
    ck_assert_int_eq(s_count_entries(fx.dir, NULL), 1);
}
END_TEST

START_TEST(test_empty_payload)
{
    ck_assert_int_eq(state_save(fx.dir, "empty", "zscore", NULL, 0, fx.err, sizeof fx.err), 0);
    void *data = NULL;
    size_t len = 5;
    int moved = -1;
    ck_assert_int_eq(
        state_load(fx.dir, "empty", "zscore", &data, &len, &moved, fx.err, sizeof fx.err), 0);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(moved, 0);
    free(data);
}
END_TEST

START_TEST(test_atomic_replace)
{
    char p[512];
    s_path(p, sizeof p, "model.bin");
    ck_assert_int_eq(state_save(fx.dir, "model.bin", "zscore", "first", 5, fx.err, sizeof fx.err),
                     0);
    struct stat before, after;
    ck_assert_int_eq(stat(p, &before), 0);
    /* Hold the old file open: a reader of the old version must keep seeing it whole. */
    int fd = open(p, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(state_save(fx.dir, "model.bin", "zscore", "second!", 7, fx.err, sizeof fx.err),
                     0);
    ck_assert_int_eq(stat(p, &after), 0);
    /* A new inode proves the file was replaced by rename, not rewritten in place. */
    ck_assert(before.st_ino != after.st_ino);
    char old[128] = {0};
    ck_assert_int_eq(pread(fd, old, sizeof old, 0), STATE_HEADER_SIZE + 5);
    ck_assert_int_eq(memcmp(old + STATE_HEADER_SIZE, "first", 5), 0);
    close(fd);
    ck_assert_int_eq(after.st_mode & 0777, 0600);

    void *data = NULL;
    size_t len = 0;
    ck_assert_int_eq(
        state_load(fx.dir, "model.bin", "zscore", &data, &len, NULL, fx.err, sizeof fx.err), 0);
    ck_assert_uint_eq(len, 7);
    ck_assert_int_eq(memcmp(data, "second!", 7), 0);
    free(data);
    ck_assert_int_eq(s_count_entries(fx.dir, NULL), 1);
}
END_TEST

START_TEST(test_missing_file)
{
    void *data = (void *)1;
    size_t len = 3;
    int moved = -1;
    ck_assert_int_eq(
        state_load(fx.dir, "absent.bin", "zscore", &data, &len, &moved, fx.err, sizeof fx.err),
        EW_ENOENT);
    ck_assert_int_eq(moved, 0);
    ck_assert_ptr_null(data);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(s_count_entries(fx.dir, NULL), 0);
}
END_TEST

START_TEST(test_truncated_file)
{
    s_save_sample("model.bin", "zscore");
    size_t len;
    unsigned char *raw = s_read_file("model.bin", &len);
    s_write_file("model.bin", raw, len - 1);
    s_expect_corrupt("model.bin", "header says");

    /* Shorter than the header itself. */
    s_write_file("short.bin", raw, 10);
    s_expect_corrupt("short.bin", "truncated");

    /* An empty file, as a crash of a non-atomic writer would leave. */
    s_write_file("zero.bin", raw, 0);
    s_expect_corrupt("zero.bin", "truncated");
    free(raw);
}
END_TEST

START_TEST(test_trailing_garbage)
{
    s_save_sample("model.bin", "zscore");
    size_t len;
    unsigned char *raw = s_read_file("model.bin", &len);
    unsigned char *longer = malloc(len + 5);
    memcpy(longer, raw, len);
    memcpy(longer + len, "extra", 5);
    s_write_file("model.bin", longer, len + 5);
    s_expect_corrupt("model.bin", "header says");
    free(longer);
    free(raw);
}
END_TEST

START_TEST(test_flipped_payload_byte)
{
    s_save_sample("model.bin", "zscore");
    size_t len;
    unsigned char *raw = s_read_file("model.bin", &len);
    raw[STATE_HEADER_SIZE + 5] ^= 0x01;
    s_write_file("model.bin", raw, len);
    s_expect_corrupt("model.bin", "payload checksum");
    free(raw);
}
END_TEST

START_TEST(test_flipped_header_byte)
{
    /* Every single-bit flip anywhere in the 64-byte header must be caught. */
    s_save_sample("model.bin", "zscore");
    size_t len;
    unsigned char *raw = s_read_file("model.bin", &len);
    for (int i = 0; i < STATE_HEADER_SIZE; i++) {
        char name[32];
        snprintf(name, sizeof name, "flip%02d.bin", i);
        raw[i] ^= 0x10;
        s_write_file(name, raw, len);
        raw[i] ^= 0x10;
        const char *why = i < 8 ? "magic" : i < 32 ? "checksum" : "plugin";
        s_expect_corrupt(name, why);
    }
    free(raw);
}
END_TEST

START_TEST(test_wrong_plugin)
{
    s_save_sample("model.bin", "iforest");
    s_expect_corrupt("model.bin", "written by plugin 'iforest', expected 'zscore'");
}
END_TEST

START_TEST(test_wrong_version_and_header_size)
{
    s_save_sample("v.bin", "zscore");
    size_t len;
    unsigned char *raw = s_read_file("v.bin", &len);
    raw[8] = 2; /* version 2, with a valid header CRC: a newer writer */
    s_fix_header_crc(raw);
    s_write_file("v.bin", raw, len);
    s_expect_corrupt("v.bin", "format version 2");

    raw[8] = 1;
    raw[12] = 128; /* header size */
    s_fix_header_crc(raw);
    s_write_file("h.bin", raw, len);
    s_expect_corrupt("h.bin", "header size");
    free(raw);
}
END_TEST

START_TEST(test_huge_length_field)
{
    /* Length fields with a valid header CRC that claim far more than the file holds:
     * refused before any allocation (under ASan a 2^62-byte malloc would abort). */
    static const uint64_t lengths[] = {UINT64_MAX, (uint64_t)1 << 62, ((uint64_t)1 << 30) + 1,
                                       100000};
    static const char *const whys[] = {"1 GiB", "1 GiB", "1 GiB", "header says"};
    s_save_sample("model.bin", "zscore");
    size_t len;
    unsigned char *raw = s_read_file("model.bin", &len);
    for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
        for (int i = 0; i < 8; i++)
            raw[16 + i] = (unsigned char)(lengths[k] >> (8 * i));
        s_fix_header_crc(raw);
        char name[32];
        snprintf(name, sizeof name, "huge%zu.bin", k);
        s_write_file(name, raw, len);
        s_expect_corrupt(name, whys[k]);
    }
    free(raw);
}
END_TEST

START_TEST(test_foreign_file)
{
    s_write_file("model.bin", "{\"not\": \"ours\"}\n", 16);
    s_expect_corrupt("model.bin", "corrupt");
    static const char text[] =
        "this is a text file that is long enough to fill the sixty-four byte header";
    s_write_file("text.bin", text, sizeof text);
    s_expect_corrupt("text.bin", "bad magic");
}
END_TEST

START_TEST(test_corrupt_twice_keeps_both_copies)
{
    for (int i = 0; i < 3; i++) {
        s_write_file("model.bin", "garbage", 7);
        void *data = NULL;
        size_t len = 0;
        int moved = 0;
        ck_assert_int_eq(
            state_load(fx.dir, "model.bin", "zscore", &data, &len, &moved, fx.err, sizeof fx.err),
            EW_ENOENT);
        ck_assert_int_eq(moved, 1);
    }
    /* Three corruptions (most likely within one second) leave three distinct copies. */
    ck_assert_int_eq(s_count_entries(fx.dir, "model.bin.corrupt-"), 3);
    ck_assert(!s_exists("model.bin"));
}
END_TEST

START_TEST(test_load_of_a_folder_is_an_error)
{
    char p[512];
    s_path(p, sizeof p, "model.bin");
    ck_assert_int_eq(mkdir(p, 0700), 0);
    void *data = NULL;
    size_t len = 0;
    int moved = -1;
    ck_assert_int_eq(
        state_load(fx.dir, "model.bin", "zscore", &data, &len, &moved, fx.err, sizeof fx.err), -1);
    ck_assert_int_eq(moved, 0);
    ck_assert_ptr_nonnull(strstr(fx.err, "not a regular file"));
    ck_assert(s_exists("model.bin")); /* left for a person to look at */
}
END_TEST

START_TEST(test_name_validation)
{
    ck_assert(state_name_valid("model.bin"));
    ck_assert(state_name_valid("a"));
    ck_assert(state_name_valid("A-b_c.1"));
    ck_assert(state_name_valid("x."));
    char name[80];
    memset(name, 'n', 64);
    name[64] = '\0';
    ck_assert(state_name_valid(name));
    name[64] = 'n';
    name[65] = '\0';
    ck_assert(!state_name_valid(name));
    ck_assert(!state_name_valid(NULL));
    ck_assert(!state_name_valid(""));
    ck_assert(!state_name_valid(".hidden"));
    ck_assert(!state_name_valid("."));
    ck_assert(!state_name_valid(".."));
    ck_assert(!state_name_valid("a/b"));
    ck_assert(!state_name_valid("../escape"));
    ck_assert(!state_name_valid("a b"));
    ck_assert(!state_name_valid("tab\t"));
    ck_assert(!state_name_valid("caf\xc3\xa9"));

    /* The save and load entry points enforce it, so a plugin cannot escape its folder. */
    ck_assert_int_eq(state_save(fx.dir, "../escape", "zscore", "x", 1, fx.err, sizeof fx.err), -1);
    ck_assert_ptr_nonnull(strstr(fx.err, "invalid state file name"));
    void *data = NULL;
    size_t len = 0;
    ck_assert_int_eq(state_load(fx.dir, "a/b", "zscore", &data, &len, NULL, fx.err, sizeof fx.err),
                     -1);
    ck_assert_int_eq(s_count_entries(fx.dir, NULL), 0);
}
END_TEST

START_TEST(test_plugin_name_limits)
{
    const char *p32 = "abcdefghijklmnopqrstuvwxyz012345";
    ck_assert_uint_eq(strlen(p32), 32);
    ck_assert_int_eq(state_save(fx.dir, "m", p32, "x", 1, fx.err, sizeof fx.err), 0);
    void *data = NULL;
    size_t len = 0;
    ck_assert_int_eq(state_load(fx.dir, "m", p32, &data, &len, NULL, fx.err, sizeof fx.err), 0);
    free(data);
    /* A prefix of a 32-byte name is another plugin. */
    ck_assert_int_eq(state_load(fx.dir, "m", "abcdefghijklmnopqrstuvwxyz01234", &data, &len, NULL,
                                fx.err, sizeof fx.err),
                     EW_ENOENT);
    ck_assert_int_eq(
        state_save(fx.dir, "m", "abcdefghijklmnopqrstuvwxyz0123456", "x", 1, fx.err, sizeof fx.err),
        -1);
    ck_assert_int_eq(state_save(fx.dir, "m", "", "x", 1, fx.err, sizeof fx.err), -1);
}
END_TEST

START_TEST(test_save_into_missing_folder)
{
    char p[512];
    s_path(p, sizeof p, "does/not/exist");
    ck_assert_int_eq(state_save(p, "m", "zscore", "x", 1, fx.err, sizeof fx.err), -1);
    ck_assert_ptr_nonnull(strstr(fx.err, "does/not/exist"));
    ck_assert_ptr_nonnull(strstr(fx.err, "No such file"));
}
END_TEST

START_TEST(test_prepare_dir_creates_nested)
{
    char state_dir[512], out[512];
    s_path(state_dir, sizeof state_dir, "var/lib/edgewatch/");
    umask(022);
    ck_assert_msg(state_prepare_dir(state_dir, "pump_z", out, sizeof out, fx.err, sizeof fx.err) ==
                      0,
                  "%s", fx.err);
    char expect[512];
    s_path(expect, sizeof expect, "var/lib/edgewatch/pump_z");
    ck_assert_str_eq(out, expect);
    struct stat st;
    ck_assert_int_eq(stat(out, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert_int_eq(st.st_mode & 0777, 0750);
    s_path(expect, sizeof expect, "var/lib");
    ck_assert_int_eq(stat(expect, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0750);
    /* The probe file is gone. */
    ck_assert_int_eq(s_count_entries(out, NULL), 0);
    /* Idempotent, and usable right away. */
    ck_assert_int_eq(state_prepare_dir(state_dir, "pump_z", out, sizeof out, fx.err, sizeof fx.err),
                     0);
    ck_assert_int_eq(state_save(out, "model.bin", "zscore", "x", 1, fx.err, sizeof fx.err), 0);
    /* Small output buffers are refused, not overrun. */
    char tiny[8];
    ck_assert_int_eq(
        state_prepare_dir(state_dir, "pump_z", tiny, sizeof tiny, fx.err, sizeof fx.err), -1);
    ck_assert_ptr_nonnull(strstr(fx.err, "too long"));
}
END_TEST

START_TEST(test_prepare_dir_removes_stale_temporaries)
{
    /* A crash in the middle of state_save leaves ".FILE.tmp-XXXXXX" behind; the
     * next start removes those and nothing else. */
    char out[512];
    ck_assert_int_eq(state_prepare_dir(fx.dir, "node", out, sizeof out, fx.err, sizeof fx.err), 0);
    ck_assert_int_eq(state_save(out, "model.bin", "zscore", "abc", 3, fx.err, sizeof fx.err), 0);
    s_write_file("node/.model.bin.tmp-Ab12Cd", "half", 4);
    s_write_file("node/.keepme", "x", 1);
    s_write_file("node/notes.tmp-123456", "x", 1);
    ck_assert_int_eq(state_prepare_dir(fx.dir, "node", out, sizeof out, fx.err, sizeof fx.err), 0);
    ck_assert(!s_exists("node/.model.bin.tmp-Ab12Cd"));
    ck_assert(s_exists("node/.keepme"));
    ck_assert(s_exists("node/notes.tmp-123456"));
    void *data = NULL;
    size_t len = 0;
    int moved = 0;
    ck_assert_int_eq(state_load(out, "model.bin", "zscore", &data, &len, &moved, fx.err, sizeof fx.err), 0);
    ck_assert_uint_eq(len, 3);
    free(data);
}
END_TEST

START_TEST(test_prepare_dir_not_a_folder)
{
    /* state_dir itself is a regular file. */
    char state_dir[512], out[512];
    s_write_file("plainfile", "x", 1);
    s_path(state_dir, sizeof state_dir, "plainfile");
    ck_assert_int_eq(state_prepare_dir(state_dir, "pump_z", out, sizeof out, fx.err, sizeof fx.err),
                     -1);
    ck_assert_msg(strstr(fx.err, "plainfile exists but is not a folder"), "%s", fx.err);

    /* A parent of state_dir is a regular file (ENOTDIR). */
    s_path(state_dir, sizeof state_dir, "plainfile/state");
    ck_assert_int_eq(state_prepare_dir(state_dir, "pump_z", out, sizeof out, fx.err, sizeof fx.err),
                     -1);
    ck_assert_msg(strstr(fx.err, "not a folder") && strstr(fx.err, "state_dir in [pipeline]"), "%s",
                  fx.err);

    /* The node's folder name is taken by a file. */
    char node_file[512];
    s_path(state_dir, sizeof state_dir, "st");
    ck_assert_int_eq(mkdir(state_dir, 0750), 0);
    s_path(node_file, sizeof node_file, "st/pump_z");
    s_write_file("st/pump_z", "x", 1);
    ck_assert_int_eq(state_prepare_dir(state_dir, "pump_z", out, sizeof out, fx.err, sizeof fx.err),
                     -1);
    ck_assert_msg(strstr(fx.err, "exists but is not a folder"), "%s", fx.err);
}
END_TEST

START_TEST(test_prepare_dir_bad_arguments)
{
    char out[512];
    ck_assert_int_eq(state_prepare_dir("", "n", out, sizeof out, fx.err, sizeof fx.err), -1);
    ck_assert_ptr_nonnull(strstr(fx.err, "state_dir"));
    ck_assert_int_eq(state_prepare_dir(fx.dir, "../escape", out, sizeof out, fx.err, sizeof fx.err),
                     -1);
    ck_assert_int_eq(state_prepare_dir(fx.dir, "a/b", out, sizeof out, fx.err, sizeof fx.err), -1);
    ck_assert_int_eq(s_count_entries(fx.dir, NULL), 0);
}
END_TEST

/* Runs state_prepare_dir(state_dir, "node") in a child after `prepare` (a setup
 * step that may need privileges) and reports through a pipe. Returns the child's
 * result: 0/-1 from state_prepare_dir, or 77 when `prepare` could not run. */
typedef int (*s_child_prepare)(const char *state_dir);

static int s_prepare_in_child(const char *state_dir, s_child_prepare prepare, char *err,
                              size_t errlen)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        if (prepare(state_dir) != 0)
            _exit(77);
        char out[512], cerr[512] = "";
        int rc = state_prepare_dir(state_dir, "node", out, sizeof out, cerr, sizeof cerr);
        ssize_t ignored = write(fds[1], cerr, strlen(cerr));
        (void)ignored;
        _exit(rc == 0 ? 0 : 1);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], err, errlen - 1);
    err[n > 0 ? n : 0] = '\0';
    close(fds[0]);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    int code = WEXITSTATUS(status);
    return code == 77 ? 77 : code == 0 ? 0 : -1;
}

static int s_drop_to_nobody(const char *state_dir)
{
    (void)state_dir;
    if (geteuid() != 0)
        return 0;
    return setgid(65534) == 0 && setuid(65534) == 0 ? 0 : -1;
}

static int s_mount_read_only(const char *state_dir)
{
    /* A private mount namespace keeps the read-only tmpfs invisible to the rest of
     * the machine and gone when the child exits. */
    if (unshare(CLONE_NEWNS) != 0)
        return -1;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return -1;
    return mount("tmpfs", state_dir, "tmpfs", MS_RDONLY, "size=64k");
}

START_TEST(test_prepare_dir_read_only)
{
    char state_dir[512], out[512], err[512];
    s_path(state_dir, sizeof state_dir, "ro");
    ck_assert_int_eq(mkdir(state_dir, 0500), 0);
    /* The uid 65534 child must be able to reach the folder. */
    ck_assert_int_eq(chmod(fx.root, 0755), 0);
    ck_assert_int_eq(chmod(fx.dir, 0755), 0);

    if (geteuid() != 0) {
        /* An ordinary user is stopped by the mode bits. */
        ck_assert_int_eq(
            state_prepare_dir(state_dir, "node", out, sizeof out, fx.err, sizeof fx.err), -1);
        ck_assert_msg(strstr(fx.err, "writable by uid") &&
                          strstr(fx.err, "state_dir in [pipeline]"),
                      "%s", fx.err);
    } else {
        /* Root ignores mode bits (CAP_DAC_OVERRIDE), so chmod 0500 proves nothing
         * here: run the same check as uid 65534 in a child, which is what the
         * container does (it runs as a non-root uid). */
        int rc = s_prepare_in_child(state_dir, s_drop_to_nobody, err, sizeof err);
        if (rc != 77) {
            ck_assert_int_eq(rc, -1);
            ck_assert_msg(strstr(err, "writable by uid 65534") &&
                              strstr(err, "state_dir in [pipeline]"),
                          "%s", err);
        }
    }

    /* A read-only mount, where root too must be refused. Needs CAP_SYS_ADMIN; when
     * the test runs without it (rootless container) that part is skipped. */
    s_path(state_dir, sizeof state_dir, "rofs");
    ck_assert_int_eq(mkdir(state_dir, 0755), 0);
    int rc = s_prepare_in_child(state_dir, s_mount_read_only, err, sizeof err);
    if (rc != 77) {
        ck_assert_int_eq(rc, -1);
        ck_assert_msg(strstr(err, "Read-only file system") && strstr(err, "writable by uid"), "%s",
                      err);
    }
}
END_TEST

static int s_mount_read_only_with_node(const char *state_dir)
{
    /* Make state_dir/node exist inside a read-only mount: mount a tmpfs, create the
     * folder, then remount it read-only. */
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return -1;
    if (mount("tmpfs", state_dir, "tmpfs", 0, "size=64k") != 0)
        return -1;
    char node[600];
    snprintf(node, sizeof node, "%s/node", state_dir);
    if (mkdir(node, 0750) != 0)
        return -1;
    return mount(NULL, state_dir, NULL, MS_REMOUNT | MS_RDONLY, NULL);
}

START_TEST(test_prepare_dir_existing_on_read_only_mount)
{
    char state_dir[512], err[512];
    s_path(state_dir, sizeof state_dir, "rofs");
    ck_assert_int_eq(mkdir(state_dir, 0755), 0);
    int rc = s_prepare_in_child(state_dir, s_mount_read_only_with_node, err, sizeof err);
    if (rc == 77)
        return; /* no CAP_SYS_ADMIN: cannot build a read-only mount here */
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(strstr(err, "is not writable") && strstr(err, "Read-only file system"), "%s",
                  err);
}
END_TEST

static int s_mount_full(const char *state_dir)
{
    /* A tmpfs with no free inode left once state_dir/node exists: the folder looks
     * writable to access(), and only creating a file shows it is not usable. */
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return -1;
    if (mount("tmpfs", state_dir, "tmpfs", 0, "size=64k,nr_inodes=2") != 0)
        return -1;
    char node[600];
    snprintf(node, sizeof node, "%s/node", state_dir);
    return mkdir(node, 0750);
}

START_TEST(test_prepare_dir_probe_catches_full_volume)
{
    char state_dir[512], err[512];
    s_path(state_dir, sizeof state_dir, "full");
    ck_assert_int_eq(mkdir(state_dir, 0755), 0);
    int rc = s_prepare_in_child(state_dir, s_mount_full, err, sizeof err);
    if (rc == 77)
        return; /* no CAP_SYS_ADMIN: cannot build the full volume here */
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(strstr(err, "is full") && strstr(err, "No space left"), "%s", err);
}
END_TEST

START_TEST(test_lock_is_exclusive_and_names_the_holder)
{
    char state[600], pid[32];
    snprintf(state, sizeof state, "%s/state", fx.dir);
    int fd = state_lock(state, fx.err, sizeof fx.err);
    ck_assert_msg(fd >= 0, "%s", fx.err);
    /* A second open file description cannot take it, even in this process. */
    ck_assert_int_eq(state_lock(state, fx.err, sizeof fx.err), STATE_LOCK_BUSY);
    snprintf(pid, sizeof pid, "(pid %ld,", (long)getpid());
    ck_assert_msg(strstr(fx.err, pid) && strstr(fx.err, "in use by another edgewatch"), "%s", fx.err);
    /* Nor a child process. */
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        char err[600];
        _exit(state_lock(state, err, sizeof err) == STATE_LOCK_BUSY ? 0 : 1);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(fd);
    fd = state_lock(state, fx.err, sizeof fx.err);
    ck_assert_msg(fd >= 0, "released lock not taken again: %s", fx.err);
    close(fd);
}
END_TEST

START_TEST(test_lock_without_a_usable_folder)
{
    char blocker[600], state[700];
    s_path(blocker, sizeof blocker, "file");
    FILE *f = fopen(blocker, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    snprintf(state, sizeof state, "%s/state", blocker);
    ck_assert_int_eq(state_lock(state, fx.err, sizeof fx.err), STATE_LOCK_NONE);
    ck_assert_ptr_nonnull(strstr(fx.err, blocker));
}
END_TEST

START_TEST(test_clean_stop_marker)
{
    char prev[128];
    ck_assert_int_eq(state_mark_running(fx.dir, prev, sizeof prev, fx.err, sizeof fx.err), 0);
    state_mark_stopped(fx.dir);
    ck_assert_int_eq(state_mark_running(fx.dir, prev, sizeof prev, fx.err, sizeof fx.err), 0);
    /* No stop: the next start finds the marker and what it said. */
    ck_assert_int_eq(state_mark_running(fx.dir, prev, sizeof prev, fx.err, sizeof fx.err), 1);
    char want[64];
    snprintf(want, sizeof want, "pid %ld started 20", (long)getpid());
    ck_assert_msg(strncmp(prev, want, strlen(want)) == 0, "%s", prev);
    state_mark_stopped(fx.dir);
    char marker[600];
    s_path(marker, sizeof marker, ".running");
    ck_assert_int_ne(access(marker, F_OK), 0);
}
END_TEST

static Suite *s_suite(void)
{
    Suite *s = suite_create("state");
    TCase *tc = tcase_create("files");
    tcase_add_unchecked_fixture(tc, s_root_setup, s_root_teardown);
    tcase_add_checked_fixture(tc, s_setup, NULL);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_prepare_dir_removes_stale_temporaries);
    tcase_add_test(tc, test_empty_payload);
    tcase_add_test(tc, test_atomic_replace);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_truncated_file);
    tcase_add_test(tc, test_trailing_garbage);
    tcase_add_test(tc, test_flipped_payload_byte);
    tcase_add_test(tc, test_flipped_header_byte);
    tcase_add_test(tc, test_wrong_plugin);
    tcase_add_test(tc, test_wrong_version_and_header_size);
    tcase_add_test(tc, test_huge_length_field);
    tcase_add_test(tc, test_foreign_file);
    tcase_add_test(tc, test_corrupt_twice_keeps_both_copies);
    tcase_add_test(tc, test_load_of_a_folder_is_an_error);
    tcase_add_test(tc, test_name_validation);
    tcase_add_test(tc, test_plugin_name_limits);
    tcase_add_test(tc, test_save_into_missing_folder);
    suite_add_tcase(s, tc);

    TCase *dirs = tcase_create("folders");
    tcase_add_unchecked_fixture(dirs, s_root_setup, s_root_teardown);
    tcase_add_checked_fixture(dirs, s_setup, NULL);
    tcase_add_test(dirs, test_prepare_dir_creates_nested);
    tcase_add_test(dirs, test_prepare_dir_not_a_folder);
    tcase_add_test(dirs, test_prepare_dir_bad_arguments);
    tcase_add_test(dirs, test_prepare_dir_read_only);
    tcase_add_test(dirs, test_prepare_dir_existing_on_read_only_mount);
    tcase_add_test(dirs, test_prepare_dir_probe_catches_full_volume);
    tcase_add_test(dirs, test_lock_is_exclusive_and_names_the_holder);
    tcase_add_test(dirs, test_lock_without_a_usable_folder);
    tcase_add_test(dirs, test_clean_stop_marker);
    suite_add_tcase(s, dirs);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(s_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
