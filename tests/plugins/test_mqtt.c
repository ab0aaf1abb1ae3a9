/* Tests of the mqtt sink through the SDK harness, without a broker: option
 * checks, the spool (fsync'd before consume returns, bounded under both
 * policies, a torn tail truncated on reopen, ids continuing across restarts).
 * The real-broker cases are in tests/integration/test_mqtt.py. */
#include <edgewatch/testing.h>

#include "ptest.h"

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Each test has its own folder (a checked fixture). */
static void s_setup(void)
{
    ptest_suite_dir_make("mqtt");
}

/* A loopback port nobody listens on: the broker is "down". */
static int s_dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static ew_harness *s_sink(const char *policy, const char *spool_max)
{
    ew_harness *h = ew_harness_new(ew_plugin_entry(), ptest_suite_dir());
    char url[64];
    snprintf(url, sizeof url, "mqtt://127.0.0.1:%d", s_dead_port());
    ew_harness_option(h, "broker", url);
    ew_harness_option(h, "spool_full", policy);
    ew_harness_option(h, "spool_max", spool_max);
    ew_harness_option(h, "drain_timeout", "0");
    ew_harness_input(h, 2, (const char *[]){"temp", "pressure"});
    return h;
}

static int s_consume(ew_harness *h, size_t n, int64_t t0)
{
    int64_t *ts = malloc(n * sizeof *ts);
    double *v = malloc(2 * n * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        ts[i] = t0 + (int64_t)i;
        v[2 * i] = (double)i;
        v[2 * i + 1] = 1.5;
    }
    int rc = ew_harness_consume(h, n, ts, v);
    free(ts);
    free(v);
    return rc;
}

/* Total bytes of the spool's segment files. */
static long s_spool_bytes(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/test/spool", ptest_suite_dir());
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    long total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "seg-", 4) != 0)
            continue;
        char p[1024];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        ck_assert_int_eq(stat(p, &st), 0);
        total += st.st_size;
    }
    closedir(d);
    return total;
}

START_TEST(test_bad_options_are_clear)
{
    const char *cases[][3] = {
        {"broker", "tcp://x:1", "must start with mqtt:// or mqtts://"},
        {"broker", "mqtt://x:70000", "port must be a number"},
        {"topic", "a/{channel}", "unknown placeholder"},
        {"topic", "a/#", "without + or #"},
        {"ca_file", "/x.pem", "need a TLS broker"},
        {"password_env", "X", "needs a username"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ew_harness *h = ew_harness_new(ew_plugin_entry(), ptest_suite_dir());
        if (strcmp(cases[i][0], "broker") != 0)
            ew_harness_option(h, "broker", "mqtt://127.0.0.1:1");
        ew_harness_option(h, cases[i][0], cases[i][1]);
        ew_harness_input(h, 1, (const char *[]){"temp"});
        ck_assert_int_ne(ew_harness_init(h), EW_OK);
        ck_assert_msg(strstr(ew_harness_error(h), cases[i][2]), "%s: %s", cases[i][1], ew_harness_error(h));
        ew_harness_destroy(&h);
    }
}
END_TEST

START_TEST(test_spools_while_broker_down_and_keeps_ids_across_restarts)
{
    ew_harness *h = s_sink("block", "1MiB");
    ck_assert_int_eq(ew_harness_init(h), EW_OK);
    ck_assert_int_eq(s_consume(h, 100, 1000), EW_OK);
    ck_assert_uint_eq(ew_harness_counter(h, "mqtt_spooled"), 100);
    long after_first = s_spool_bytes();
    ck_assert_int_gt(after_first, 100 * 24); /* on disk when consume returned */
    ew_harness_flush(h);
    ew_harness_destroy(&h);
    /* A torn record at the tail (a crash mid-write) is cut away on the next start. */
    char seg[600];
    snprintf(seg, sizeof seg, "%s/test/spool/seg-0000000000000001", ptest_suite_dir());
    int fd = open(seg, O_WRONLY | O_APPEND);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "EWS1\x40\0\0\0garbage", 15), 15);
    close(fd);
    h = s_sink("block", "1MiB");
    ck_assert_int_eq(ew_harness_init(h), EW_OK);
    ck_assert_int_eq(s_spool_bytes(), after_first);
    ck_assert_uint_ge(ew_harness_logged(h, EW_LOG_WARN), 1);
    ck_assert_int_eq(s_consume(h, 10, 5000), EW_OK);
    ew_harness_flush(h);
    ew_harness_destroy(&h);
    /* Ids 1..110 are all in the one segment, in order. */
    FILE *f = fopen(seg, "rb");
    ck_assert_ptr_nonnull(f);
    char *data = malloc(1 << 20);
    size_t n = fread(data, 1, 1 << 20, f);
    fclose(f);
    size_t off = 0;
    for (uint64_t seq = 1; seq <= 110; seq++) {
        uint32_t len;
        uint64_t got;
        ck_assert_uint_le(off + 24, n);
        memcpy(&len, data + off + 4, 4);
        memcpy(&got, data + off + 8, 8);
        ck_assert_uint_eq(got, seq);
        char want[32];
        snprintf(want, sizeof want, "{\"seq\":%llu,", (unsigned long long)seq);
        ck_assert_ptr_nonnull(memmem(data + off + 24, len, want, strlen(want)));
        off += 24 + len;
    }
    ck_assert_uint_eq(off, n);
    free(data);
}
END_TEST

START_TEST(test_spool_full_block_then_drop_oldest)
{
    ew_harness *h = s_sink("block", "1MiB");
    ck_assert_int_eq(ew_harness_init(h), EW_OK);
    int rc = EW_OK;
    int64_t t = 0;
    for (int i = 0; i < 200 && rc == EW_OK; i++, t += 1000)
        rc = s_consume(h, 100, t);
    ck_assert_int_eq(rc, EW_EAGAIN);
    ck_assert_ptr_nonnull(strstr(ew_harness_error(h), "spool full"));
    ck_assert_int_le(s_spool_bytes(), 1 << 20);
    ck_assert_uint_eq(ew_harness_counter(h, "mqtt_dropped"), 0);
    uint64_t kept = ew_harness_counter(h, "mqtt_spooled");
    ew_harness_flush(h);
    ew_harness_destroy(&h);

    h = s_sink("drop_oldest", "1MiB");
    ck_assert_int_eq(ew_harness_init(h), EW_OK);
    for (int i = 0; i < 100; i++, t += 1000)
        ck_assert_int_eq(s_consume(h, 100, t), EW_OK);
    ck_assert_int_le(s_spool_bytes(), 1 << 20);
    uint64_t dropped = ew_harness_counter(h, "mqtt_dropped");
    ck_assert_uint_gt(dropped, 0);
    ck_assert_uint_le(dropped, kept + 10000);
    ew_harness_flush(h);
    ew_harness_destroy(&h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("mqtt");
    TCase *tc = tcase_create("spool");
    tcase_add_checked_fixture(tc, s_setup, ptest_suite_dir_remove);
    tcase_add_test(tc, test_bad_options_are_clear);
    tcase_add_test(tc, test_spools_while_broker_down_and_keeps_ids_across_restarts);
    tcase_add_test(tc, test_spool_full_block_then_drop_oldest);
    suite_add_tcase(s, tc);
    return ptest_run(s);
}
