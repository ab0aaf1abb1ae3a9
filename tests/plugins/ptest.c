/* Shared helpers of the plugin tests: see ptest.h. */
#include "ptest.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char s_suite_dir[192];

static int s_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

int ptest_rmtree(const char *path)
{
    return nftw(path, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void ptest_suite_dir_make(const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(s_suite_dir, sizeof s_suite_dir, "%s/ew-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
    ck_assert_ptr_nonnull(mkdtemp(s_suite_dir));
}

void ptest_suite_dir_remove(void)
{
    ptest_rmtree(s_suite_dir);
}

const char *ptest_suite_dir(void)
{
    return s_suite_dir;
}

char *ptest_tmpdir(const char *name)
{
    size_t len = strlen("/tmp/") + strlen(name) + strlen("-XXXXXX") + 1;
    char *dir = malloc(len);
    ck_assert_ptr_nonnull(dir);
    snprintf(dir, len, "/tmp/%s-XXXXXX", name);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    return dir;
}

int ptest_tmpdir_free(char *dir)
{
    int rc = ptest_rmtree(dir);
    free(dir);
    return rc;
}

void ptest_capture_stderr(char *log_path, size_t len)
{
    snprintf(log_path, len, "%s/log-XXXXXX", s_suite_dir);
    int fd = mkstemp(log_path);
    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    dup2(fd, 2);
    close(fd);
}

void ptest_stderr_to(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    dup2(fd, 2);
    close(fd);
}

void ptest_release_stderr(const char *log_path)
{
    unlink(log_path);
}

char *ptest_slurp(const char *path)
{
    fflush(stderr);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char *text = NULL;
    size_t cap = 0;
    if (getdelim(&text, &cap, '\0', f) < 0) {
        free(text);
        text = strdup("");
    }
    fclose(f);
    return text;
}

void ptest_options(ew_harness *h, const char *const *kv)
{
    for (size_t i = 0; kv && kv[i]; i += 2)
        ck_assert_int_eq(ew_harness_option(h, kv[i], kv[i + 1]), EW_OK);
}

ew_harness *ptest_open(const char *state_dir, size_t nch, const char *const *names,
                       const char *const *kv, int *rc)
{
    ew_harness *h = ew_harness_new(ew_plugin_entry(), state_dir);
    ck_assert_ptr_nonnull(h);
    if (names)
        ck_assert_int_eq(ew_harness_input(h, nch, names), EW_OK);
    ptest_options(h, kv);
    int r = ew_harness_init(h);
    if (rc)
        *rc = r;
    else
        PTEST_ASSERT_INIT(h, r);
    return h;
}

ew_harness *ptest_open_source(const char *key, const char *value, const char *const *kv,
                              int *rc)
{
    ew_harness *h = ew_harness_new(ew_plugin_entry(), NULL);
    ck_assert_ptr_nonnull(h);
    bool given = false;
    ptest_options(h, kv);
    for (size_t i = 0; kv && kv[i]; i += 2)
        given |= strcmp(kv[i], key) == 0;
    if (!given)
        ck_assert_int_eq(ew_harness_option(h, key, value), EW_OK);
    int r = ew_harness_init(h);
    if (rc)
        *rc = r;
    else
        PTEST_ASSERT_INIT(h, r);
    return h;
}

void ptest_nap(void)
{
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
}

const double *ptest_row(ew_harness *h, size_t i)
{
    return ew_harness_emitted_values(h) + i * ew_harness_output(h)->channels;
}

void ptest_produce_until(ew_harness *h, const char *counter, uint64_t n, const char *what)
{
    for (int i = 0; i < 5000; i++) {
        int64_t wake = 0;
        int rc = ew_harness_produce(h, &wake);
        ck_assert_msg(rc == EW_OK, "produce: %d %s", rc, ew_harness_error(h));
        if (ew_harness_counter(h, counter) >= n)
            return;
        ptest_nap();
    }
    ck_abort_msg("only %llu of %llu %s arrived", (unsigned long long)ew_harness_counter(h, counter),
                 (unsigned long long)n, what);
}

int ptest_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
