/* Shared helpers of the plugin tests (tests/plugins/test_*.c): temporary
 * folders, stderr capture, whole-file reads, and the usual harness set-up. */
#ifndef EW_TESTS_PTEST_H
#define EW_TESTS_PTEST_H

#include <edgewatch/testing.h>

#include <check.h>
#include <stddef.h>
#include <stdint.h>

/* ---- temporary folders ----------------------------------------------------------------------- */

/* The suite's temporary folder, $TMPDIR/ew-<tag>-XXXXXX (or /tmp/...). Made and removed by
 * the parent process when used as an unchecked fixture, so it goes away even when a forked
 * test fails midway. */
void ptest_suite_dir_make(const char *tag);
void ptest_suite_dir_remove(void);
const char *ptest_suite_dir(void);

/* A fresh folder /tmp/<name>-XXXXXX (asserted); the caller frees it with ptest_tmpdir_free. */
char *ptest_tmpdir(const char *name);
/* Removes `dir` and everything in it, then frees it; nftw's code (0 when all went). */
int ptest_tmpdir_free(char *dir);
/* Removes `path` and everything in it (depth first, links not followed); nftw's code. */
int ptest_rmtree(const char *path);

/* ---- stderr (where the harness prints log lines) --------------------------------------------- */

/* Points fd 2 at a new file <suite dir>/log-XXXXXX, whose path goes to log_path. */
void ptest_capture_stderr(char *log_path, size_t len);
/* Points fd 2 at `path`, created or truncated. */
void ptest_stderr_to(const char *path);
/* Removes the log file of ptest_capture_stderr. */
void ptest_release_stderr(const char *log_path);

/* The whole text of `path` (asserted readable), "" when empty; free()d by the caller.
 * Flushes stderr first, so a captured log is complete. */
char *ptest_slurp(const char *path);

/* ---- the harness ----------------------------------------------------------------------------- */

/* Sets NULL-terminated option pairs (kv may be NULL), each asserted accepted. */
void ptest_options(ew_harness *h, const char *const *kv);

/* A harness for this executable's plugin (ew_plugin_entry) with state under `state_dir`
 * (NULL: none), input channels `names` (NULL: no input set; asserted accepted) and options
 * `kv`, then init: its code goes to *rc, or, when rc is NULL, is asserted EW_OK. */
ew_harness *ptest_open(const char *state_dir, size_t nch, const char *const *names,
                       const char *const *kv, int *rc);

/* A source harness (no state folder, no input) with options `kv`, plus `key` = `value`
 * unless kv sets `key` itself, then init: its code goes to *rc, or, when rc is NULL, is
 * asserted EW_OK. */
ew_harness *ptest_open_source(const char *key, const char *value, const char *const *kv,
                              int *rc);

/* Asserts init's code `rc` is EW_OK (a macro, so a failure names the test's line). */
#define PTEST_ASSERT_INIT(h, rc) \
    ck_assert_msg((rc) == EW_OK, "init failed (%d): %s", (rc), ew_harness_error(h))

/* Produces until counter `counter` reaches `n`, napping 2 ms between tries (bounded: about
 * 10 s, then fails saying "only X of N <what> arrived"). Each produce is asserted EW_OK. */
void ptest_produce_until(ew_harness *h, const char *counter, uint64_t n, const char *what);

/* Sleeps 2 ms (polling loops). */
void ptest_nap(void);

/* Row `i` of the values emitted so far. */
const double *ptest_row(ew_harness *h, size_t i);

/* ---- running --------------------------------------------------------------------------------- */

/* Runs suite `s` (CK_NORMAL output); EXIT_SUCCESS when no test failed, else EXIT_FAILURE. */
int ptest_run(Suite *s);

#endif
