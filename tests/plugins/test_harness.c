/* Tests of the SDK test harness itself (core/harness.c), with small plugins defined here. */
#include <edgewatch/testing.h>

#include <check.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char s_dir[256];

#define SUITE_TAG "harness"

/* The suite's temporary folder, made and removed by the parent process (an
 * unchecked fixture), so it goes away even when a forked test fails midway. */
static char s_base[192];

static int s_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void s_base_setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(s_base, sizeof s_base, "%s/ew-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", SUITE_TAG);
    ck_assert_ptr_nonnull(mkdtemp(s_base));
}

static void s_base_teardown(void)
{
    nftw(s_base, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void s_setup(void)
{
    snprintf(s_dir, sizeof s_dir, "%s/t-XXXXXX", s_base);
    ck_assert_ptr_nonnull(mkdtemp(s_dir));
}

static void s_teardown(void)
{
    nftw(s_dir, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- a detector that keeps a running count in a state file ---- */

typedef struct counting_config {
    int64_t start;
    const char *file;
} counting_config;

typedef struct counting {
    const ew_host *host;
    ew_node *node;
    const counting_config *cfg;
    int64_t seen;
    ew_counter *batches;
} counting;

static const ew_option s_counting_options[] = {
    EW_OPTION_RANGE("start", EW_OPT_INT, "0", 0, 1000, counting_config, start,
                    "Count to start from when there is no state."),
    EW_OPTION("file", EW_OPT_STRING, "count.bin", counting_config, file, "State file name."),
    EW_OPTION_END,
};

static int s_counting_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    counting *c = calloc(1, sizeof *c);
    c->host = host;
    c->node = node;
    c->cfg = config;
    c->seen = c->cfg->start;
    void *data;
    size_t len;
    int rc = host->state_load(node, c->cfg->file, &data, &len);
    if (rc == EW_OK) {
        ck_assert_uint_eq(len, sizeof c->seen);
        memcpy(&c->seen, data, sizeof c->seen);
        free(data);
    } else if (rc != EW_ENOENT) {
        host->set_error(node, "cannot load %s", c->cfg->file);
        free(c);
        return rc;
    }
    const char *extra[] = {"seen"};
    host->add_channels(node, 1, extra);
    c->batches = host->counter(node, "counting_batches", "batches");
    ck_assert_ptr_null(host->counter(node, "Bad-Name", "refused"));
    ck_assert_ptr_null(host->counter(node, "node_samples", "the host's own"));
    *self = c;
    return EW_OK;
}

static int s_counting_process(void *self, const ew_batch *in, ew_scores *out)
{
    counting *c = self;
    c->host->counter_add(c->batches, 1);
    for (size_t i = 0; i < in->count; i++) {
        c->seen++;
        out->score[i] = 0.25;
        out->anomaly[i] = in->values[i * in->schema->channels] > 0;
        out->extra[i] = (double)c->seen;
    }
    return EW_OK;
}

static int s_counting_flush(void *self)
{
    counting *c = self;
    return c->host->state_save(c->node, c->cfg->file, &c->seen, sizeof c->seen);
}

static void s_counting_destroy(void *self)
{
    free(self);
}

static const ew_plugin s_counting = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_DETECTOR,
    .name = "counting",
    .version = "0.0.1",
    .description = "test detector",
    .license = "MIT",
    .options = s_counting_options,
    .config_size = sizeof(counting_config),
    .init = s_counting_init,
    .process = s_counting_process,
    .flush = s_counting_flush,
    .destroy = s_counting_destroy,
};

static ew_harness *s_counting_harness(const char *state_dir)
{
    ew_harness *h = ew_harness_new(&s_counting, state_dir);
    const char *names[] = {"x"};
    ck_assert_int_eq(ew_harness_input(h, 1, names), EW_OK);
    return h;
}

START_TEST(detector_schema_scores_and_extras)
{
    ew_harness *h = s_counting_harness(s_dir);
    ck_assert_int_eq(ew_harness_init(h), EW_OK);
    const ew_schema *out = ew_harness_output(h);
    ck_assert_uint_eq(out->channels, 4);
    ck_assert_str_eq(out->names[1], "seen");
    ck_assert_int_eq(out->score_index, 2);
    ck_assert_int_eq(out->anomaly_index, 3);
    const int64_t ts[] = {1, 2, 3};
    const double v[] = {-1, 2, 0};
    ck_assert_int_eq(ew_harness_process(h, 3, ts, v), EW_OK);
    ck_assert(ew_harness_scores(h)[1] == 0.25);
    ck_assert_uint_eq(ew_harness_flags(h)[0], 0);
    ck_assert_uint_eq(ew_harness_flags(h)[1], 1);
    ck_assert(ew_harness_extra(h)[2] == 3);
    ck_assert_uint_eq(ew_harness_counter(h, "counting_batches"), 1);
    ck_assert_uint_eq(ew_harness_counter(h, "no_such_counter"), 0);
    /* The lines logged: the two refused counter names. */
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_ERROR), 2);
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_DEBUG), 2);
    ew_harness_destroy(&h);
    ck_assert_ptr_null(h);
}
END_TEST

START_TEST(state_survives_a_restart)
{
    ew_harness *h = s_counting_harness(s_dir);
    ck_assert_int_eq(ew_harness_init(h), EW_OK);
    const int64_t ts[5] = {0};
    const double v[5] = {0};
    ck_assert_int_eq(ew_harness_process(h, 5, ts, v), EW_OK);
    ck_assert_int_eq(ew_harness_flush(h), EW_OK);
    ew_harness_destroy(&h);

    char path[600];
    snprintf(path, sizeof path, "%s/test/count.bin", s_dir);
    struct stat st;
    ck_assert_msg(stat(path, &st) == 0, "no state file at %s", path);

    h = s_counting_harness(s_dir);
    ck_assert_int_eq(ew_harness_init(h), EW_OK);
    ck_assert_int_eq(ew_harness_process(h, 1, ts, v), EW_OK);
    ck_assert(ew_harness_extra(h)[0] == 6);
    ew_harness_destroy(&h);

    /* A damaged file is moved aside and reported, and the plugin starts afresh. */
    FILE *f = fopen(path, "r+");
    fseek(f, -1, SEEK_END);
    fputc('!', f);
    fclose(f);
    h = s_counting_harness(s_dir);
    ck_assert_int_eq(ew_harness_init(h), EW_OK);
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_WARN) - ew_harness_logged(h, EW_LOG_ERROR), 1);
    ck_assert_int_eq(ew_harness_process(h, 1, ts, v), EW_OK);
    ck_assert(ew_harness_extra(h)[0] == 1);
    ew_harness_destroy(&h);
}
END_TEST

/* Without a state_dir the harness keeps state in a temporary folder of its own
 * (under TMPDIR), made on first use and removed by destroy (issue 14 item 17:
 * it used to fail the plugin's init). */
static int s_count_entries(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "find '%s' -mindepth 1 | wc -l", dir);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    int n = -1;
    ck_assert_int_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

START_TEST(state_without_a_state_dir_is_temporary)
{
    const char *old = getenv("TMPDIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("TMPDIR", s_dir, 1);
    ew_harness *h = s_counting_harness(NULL);
    ck_assert_msg(ew_harness_init(h) == EW_OK, "%s", ew_harness_error(h));
    ck_assert_uint_eq(ew_harness_logged(h, EW_LOG_ERROR), 2); /* the two refused counters */
    const int64_t ts[3] = {0};
    const double v[3] = {0};
    ck_assert_int_eq(ew_harness_process(h, 3, ts, v), EW_OK);
    ck_assert_int_eq(ew_harness_flush(h), EW_OK);
    ck_assert_int_gt(s_count_entries(s_dir), 0);
    ew_harness_destroy(&h);
    ck_assert_int_eq(s_count_entries(s_dir), 0);
    if (saved)
        setenv("TMPDIR", saved, 1);
    else
        unsetenv("TMPDIR");
    free(saved);
    h = s_counting_harness(s_dir);
    ew_harness_option(h, "file", "../escape");
    ck_assert_int_ne(ew_harness_init(h), EW_OK);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(option_errors_name_key_and_line)
{
    ew_harness *h = s_counting_harness(s_dir);
    ew_harness_option(h, "file", "a.bin");
    ew_harness_option(h, "start", "5000");
    ck_assert_int_eq(ew_harness_init(h), EW_EINVAL);
    ck_assert_msg(strstr(ew_harness_error(h), "start") && strstr(ew_harness_error(h), "line 2") &&
                      strstr(ew_harness_error(h), "range"),
                  "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
    h = s_counting_harness(s_dir);
    ew_harness_option(h, "stat", "5");
    ck_assert_int_eq(ew_harness_init(h), EW_EINVAL);
    ck_assert_msg(strstr(ew_harness_error(h), "stat") && strstr(ew_harness_error(h), "start, file"),
                  "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(detector_needs_its_input_before_init)
{
    ew_harness *h = s_counting_harness(s_dir);
    ck_assert_int_eq(ew_harness_init(h), EW_OK);
    const char *names[] = {"y"};
    ck_assert_int_eq(ew_harness_input(h, 1, names), EW_EINVAL);
    ck_assert_int_eq(ew_harness_option(h, "start", "1"), EW_EINVAL);
    ck_assert_int_eq(ew_harness_init(h), EW_EINVAL);
    int64_t wake;
    ck_assert_int_eq(ew_harness_produce(h, &wake), EW_EINVAL); /* not a source */
    ew_harness_destroy(&h);
}
END_TEST

/* ---- a source that paces itself at 1 sample per second ---- */

typedef struct ticker {
    const ew_host *host;
    ew_node *node;
    int64_t next;
    int emitted;
} ticker;

static int s_ticker_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    (void)config;
    ticker *t = calloc(1, sizeof *t);
    t->host = host;
    t->node = node;
    const char *names[] = {"tick", "tock"};
    int rc = host->set_channels(node, 2, names);
    if (rc != EW_OK) {
        free(t);
        return rc;
    }
    *self = t;
    return EW_OK;
}

static int s_ticker_produce(void *self, int64_t *wake_at)
{
    ticker *t = self;
    int64_t now = t->host->monotonic(t->node);
    if (t->emitted == 5)
        return EW_EOF;
    if (t->next && now < t->next) {
        *wake_at = t->next;
        return EW_OK;
    }
    double v[2] = {t->emitted, -t->emitted};
    int rc = t->host->emit(t->node, t->host->now(t->node), v);
    if (rc != EW_OK)
        return rc;
    t->emitted++;
    t->next = now + 1000000000LL;
    *wake_at = t->next;
    return EW_OK;
}

static void s_ticker_destroy(void *self)
{
    free(self);
}

static const ew_plugin s_ticker = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_SOURCE,
    .name = "ticker",
    .version = "0.0.1",
    .description = "test source",
    .license = "MIT",
    .init = s_ticker_init,
    .produce = s_ticker_produce,
    .destroy = s_ticker_destroy,
};

START_TEST(run_jumps_the_clock_instead_of_sleeping)
{
    ew_harness *h = ew_harness_new(&s_ticker, NULL);
    ck_assert_int_eq(ew_harness_init(h), EW_OK);
    ck_assert_uint_eq(ew_harness_output(h)->channels, 2);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    ck_assert_int_eq(ew_harness_run(h, 0), EW_EOF);
    clock_gettime(CLOCK_MONOTONIC, &b);
    ck_assert_msg(b.tv_sec - a.tv_sec < 2, "run slept");
    ck_assert_uint_eq(ew_harness_emitted(h), 5);
    const int64_t *ts = ew_harness_emitted_ts(h);
    for (int i = 1; i < 5; i++)
        ck_assert(llabs(ts[i] - ts[i - 1] - 1000000000LL) < 10000000);
    ck_assert(ew_harness_emitted_values(h)[9] == -4);
    ew_harness_clear(h);
    ck_assert_uint_eq(ew_harness_emitted(h), 0);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(run_stops_at_max_samples_and_stop_request)
{
    ew_harness *h = ew_harness_new(&s_ticker, NULL);
    ck_assert_int_eq(ew_harness_init(h), EW_OK);
    ck_assert_int_eq(ew_harness_run(h, 2), EW_OK);
    ck_assert_uint_eq(ew_harness_emitted(h), 2);
    ew_harness_request_stop(h);
    ck_assert_int_eq(ew_harness_run(h, 0), EW_ESTOP);
    ck_assert_uint_eq(ew_harness_emitted(h), 2);
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(descriptor_mistakes_are_caught)
{
    ew_plugin bad = s_ticker;
    bad.abi_major = EW_ABI_MAJOR + 1;
    ew_harness *h = ew_harness_new(&bad, NULL);
    ck_assert_int_ne(ew_harness_init(h), EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "ABI"), "%s", ew_harness_error(h));
    ew_harness_destroy(&h);

    bad = s_ticker;
    bad.produce = NULL;
    h = ew_harness_new(&bad, NULL);
    ck_assert_int_ne(ew_harness_init(h), EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "produce"), "%s", ew_harness_error(h));
    ew_harness_destroy(&h);

    static const ew_option dup_options[] = {
        EW_OPTION("a", EW_OPT_INT, "1", counting_config, start, "x"),
        EW_OPTION("a", EW_OPT_INT, "1", counting_config, start, "x"),
        EW_OPTION_END,
    };
    bad = s_counting;
    bad.options = dup_options;
    h = ew_harness_new(&bad, NULL);
    const char *names[] = {"x"};
    ew_harness_input(h, 1, names);
    ck_assert_int_ne(ew_harness_init(h), EW_OK);
    ck_assert_msg(strstr(ew_harness_error(h), "twice"), "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plugin-harness");
    TCase *tc = tcase_create("harness");
    tcase_add_unchecked_fixture(tc, s_base_setup, s_base_teardown);
    tcase_add_checked_fixture(tc, s_setup, s_teardown);
    tcase_add_test(tc, detector_schema_scores_and_extras);
    tcase_add_test(tc, state_survives_a_restart);
    tcase_add_test(tc, state_without_a_state_dir_is_temporary);
    tcase_add_test(tc, option_errors_name_key_and_line);
    tcase_add_test(tc, detector_needs_its_input_before_init);
    tcase_add_test(tc, run_jumps_the_clock_instead_of_sleeping);
    tcase_add_test(tc, run_stops_at_max_samples_and_stop_request);
    tcase_add_test(tc, descriptor_mistakes_are_caught);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
