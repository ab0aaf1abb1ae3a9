/* Tests of the mqtt sink through the SDK harness, without a broker: option
 * checks, the spool (fsync'd before consume returns, bounded under both
 * policies, a torn tail truncated on reopen, ids continuing across restarts,
 * a damaged byte cut out with every later record kept and no id reused).
 * Alert events go to a real mosquitto (started here); the real-broker cases of
 * the whole binary are in tests/integration/test_mqtt.py. */
#include <edgewatch/testing.h>

#include "ptest.h"
#include "ptest_event.h"
#include "../../plugins/mqtt/spool.h"

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_MOSQUITTO "/usr/sbin/mosquitto"

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

/* Offset of record `seq` in a segment file whose first record is `first`. */
static long s_record_offset(const char *seg, uint64_t first, uint64_t seq)
{
    FILE *f = fopen(seg, "rb");
    ck_assert_ptr_nonnull(f);
    long off = 0;
    for (uint64_t q = first; q < seq; q++) {
        unsigned char h[24];
        ck_assert_int_eq(fseek(f, off, SEEK_SET), 0);
        ck_assert_uint_eq(fread(h, 1, 24, f), 24);
        off += 24 + (long)(h[4] | h[5] << 8 | h[6] << 16 | (uint32_t)h[7] << 24);
    }
    fclose(f);
    return off;
}

/* Flips one byte of a file. */
static void s_flip(const char *path, long off)
{
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    unsigned char b;
    ck_assert_int_eq(pread(fd, &b, 1, off), 1);
    b ^= 0x5a;
    ck_assert_int_eq(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

/* Every seq the spool in dir holds, in read order, into seqs (at most cap). */
static size_t s_read_all(const char *dir, uint64_t *seqs, size_t cap)
{
    spool *sp = NULL;
    spool_recovery rec;
    char err[400];
    ck_assert_msg(spool_open(&sp, dir, 1 << 20, &rec, err, sizeof err) == SPOOL_OK, "%s", err);
    ck_assert_uint_eq(rec.corrupt_stretches, 0); /* the damage is gone once cut out */
    size_t n = 0;
    uint64_t seq;
    const void *data;
    size_t len;
    while (n < cap && spool_read(sp, &seq, &data, &len, err, sizeof err) == 1) {
        char want[32];
        snprintf(want, sizeof want, "#%llu#", (unsigned long long)seq);
        ck_assert_msg(len == strlen(want) && memcmp(data, want, len) == 0, "record %llu holds %.*s",
                      (unsigned long long)seq, (int)len, (const char *)data);
        seqs[n++] = seq;
    }
    spool_close(&sp);
    return n;
}

static void s_append_marked(spool *sp, size_t n)
{
    char err[400], text[32];
    for (size_t i = 0; i < n; i++) {
        snprintf(text, sizeof text, "#%llu#", (unsigned long long)spool_next_seq(sp));
        spool_rec r = {text, strlen(text)};
        uint64_t dropped = 0;
        ck_assert_msg(spool_append(sp, &r, 1, false, &dropped, err, sizeof err) == SPOOL_OK, "%s", err);
    }
}

START_TEST(test_spool_damaged_byte_keeps_every_later_record)
{
    /* Issue 14 item 6: one bad byte in record 40 of 100 loses record 40 only; it is
     * reported as corruption with its file and offsets, and ids go on from 101. */
    char dir[600], seg[700], err[400];
    snprintf(dir, sizeof dir, "%s/spool", ptest_suite_dir());
    spool *sp = NULL;
    spool_recovery rec;
    ck_assert_msg(spool_open(&sp, dir, 1 << 20, &rec, err, sizeof err) == SPOOL_OK, "%s", err);
    s_append_marked(sp, 100);
    spool_close(&sp);
    snprintf(seg, sizeof seg, "%s/seg-0000000000000001", dir);
    long at = s_record_offset(seg, 1, 40), next = s_record_offset(seg, 1, 41);
    s_flip(seg, at + 24 + 2);

    ck_assert_msg(spool_open(&sp, dir, 1 << 20, &rec, err, sizeof err) == SPOOL_OK, "%s", err);
    ck_assert_uint_eq(rec.corrupt_stretches, 1);
    ck_assert_uint_eq(rec.corrupt_bytes, (uint64_t)(next - at));
    ck_assert_uint_eq(rec.lost_records, 1);
    ck_assert_uint_eq(rec.recovered_records, 60);
    ck_assert_uint_eq(rec.truncated_bytes, 0);
    ck_assert_uint_eq(rec.records, 99);
    char where[200];
    snprintf(where, sizeof where, "seg-0000000000000001 bytes %ld-%ld (ids 40-40)", at, next - 1);
    ck_assert_str_eq(rec.corrupt_where, where);
    ck_assert_uint_eq(spool_next_seq(sp), 101);
    s_append_marked(sp, 10);
    spool_close(&sp);

    uint64_t seqs[200];
    size_t n = s_read_all(dir, seqs, 200);
    ck_assert_uint_eq(n, 109);
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(seqs[i], i < 39 ? i + 1 : i + 2);
}
END_TEST

START_TEST(test_spool_damaged_tail_never_reuses_ids)
{
    /* A bad byte in the last record, which is whole (not a torn write): that
     * record may have been delivered, so its id is never given again. */
    char dir[600], seg[700], err[400];
    snprintf(dir, sizeof dir, "%s/spool", ptest_suite_dir());
    spool *sp = NULL;
    spool_recovery rec;
    ck_assert_msg(spool_open(&sp, dir, 1 << 20, &rec, err, sizeof err) == SPOOL_OK, "%s", err);
    s_append_marked(sp, 10);
    spool_close(&sp);
    snprintf(seg, sizeof seg, "%s/seg-0000000000000001", dir);
    long at = s_record_offset(seg, 1, 10);
    s_flip(seg, at + 9); /* the seq field of the header */

    ck_assert_msg(spool_open(&sp, dir, 1 << 20, &rec, err, sizeof err) == SPOOL_OK, "%s", err);
    ck_assert_uint_eq(rec.corrupt_stretches, 1);
    ck_assert_uint_eq(rec.truncated_bytes, 0);
    ck_assert_uint_eq(rec.records, 9);
    ck_assert_ptr_nonnull(strstr(rec.corrupt_where, "seg-0000000000000001 bytes "));
    ck_assert_uint_gt(spool_next_seq(sp), 10);
    uint64_t resumed = spool_next_seq(sp);
    s_append_marked(sp, 3);
    spool_close(&sp);

    uint64_t seqs[20];
    size_t n = s_read_all(dir, seqs, 20);
    ck_assert_uint_eq(n, 12);
    for (size_t i = 0; i < 9; i++)
        ck_assert_uint_eq(seqs[i], i + 1);
    for (size_t i = 9; i < 12; i++)
        ck_assert_uint_eq(seqs[i], resumed + (i - 9));
}
END_TEST

START_TEST(test_sink_reports_spool_corruption)
{
    /* Through the sink: the damage is an error line and a counter, and the
     * records after it are still sent (they stay in the spool: broker down). */
    ew_harness *h = s_sink("block", "1MiB");
    ck_assert_int_eq(ew_harness_init(h), EW_OK);
    ck_assert_int_eq(s_consume(h, 50, 1000), EW_OK);
    ew_harness_flush(h);
    ew_harness_destroy(&h);
    char seg[600];
    snprintf(seg, sizeof seg, "%s/test/spool/seg-0000000000000001", ptest_suite_dir());
    s_flip(seg, s_record_offset(seg, 1, 20) + 30);
    h = s_sink("block", "1MiB");
    ck_assert_int_eq(ew_harness_init(h), EW_OK);
    ck_assert_uint_eq(ew_harness_counter(h, "mqtt_spool_corruptions"), 1);
    ck_assert_uint_ge(ew_harness_logged(h, EW_LOG_ERROR), 1);
    ck_assert_int_eq(s_consume(h, 5, 5000), EW_OK);
    ew_harness_flush(h);
    ew_harness_destroy(&h);
    /* ids 1..19, 21..55 on disk, each once, with its "seq" in the payload. */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/test/spool", ptest_suite_dir());
    spool *sp = NULL;
    spool_recovery rec;
    char err[400];
    ck_assert_msg(spool_open(&sp, dir, 1 << 20, &rec, err, sizeof err) == SPOOL_OK, "%s", err);
    ck_assert_uint_eq(rec.records, 54);
    uint64_t want = 1, seq;
    const void *data;
    size_t len;
    while (spool_read(sp, &seq, &data, &len, err, sizeof err) == 1) {
        if (want == 20)
            want++;
        ck_assert_uint_eq(seq, want);
        char tag[32];
        snprintf(tag, sizeof tag, "\"seq\":%llu,", (unsigned long long)seq);
        ck_assert_ptr_nonnull(memmem(data, len, tag, strlen(tag)));
        want++;
    }
    ck_assert_uint_eq(want, 56);
    spool_close(&sp);
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

/* ---- alert events (ABI 1.2 consume_event) against a real mosquitto ---- */

/* A mosquitto broker on 127.0.0.1:port, started with a generated config in the
 * suite's folder; it dies with the test process (PR_SET_PDEATHSIG) even when an
 * assertion ends the test early. */
typedef struct s_broker {
    pid_t pid;
    int port;
} s_broker;

static void s_broker_start(s_broker *b, int port, const char *password_file)
{
    char conf[600], log[600];
    snprintf(conf, sizeof conf, "%s/mosquitto-%d.conf", ptest_suite_dir(), port);
    snprintf(log, sizeof log, "%s/mosquitto-%d.log", ptest_suite_dir(), port);
    FILE *f = fopen(conf, "w");
    ck_assert_ptr_nonnull(f);
    struct passwd *pw = getpwuid(geteuid());
    /* As root mosquitto would switch to its own user, which cannot read our folder. */
    fprintf(f, "per_listener_settings false\npersistence false\nlog_dest stderr\nuser %s\n"
               "listener %d 127.0.0.1\nallow_anonymous %s\n",
            pw ? pw->pw_name : "root", port, password_file ? "false" : "true");
    if (password_file)
        fprintf(f, "password_file %s\n", password_file);
    fclose(f);
    pid_t parent = getpid();
    b->port = port;
    b->pid = fork();
    ck_assert_int_ge(b->pid, 0);
    if (b->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(S_MOSQUITTO, S_MOSQUITTO, "-c", conf, (char *)NULL);
        execlp("mosquitto", "mosquitto", "-c", conf, (char *)NULL);
        fprintf(stderr, "cannot run %s or mosquitto from PATH: install mosquitto (tools/deps)\n", S_MOSQUITTO);
        _exit(127);
    }
    /* Ready once the port accepts connections. */
    for (int tries = 0;; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
        close(fd);
        if (rc == 0)
            break;
        int status;
        ck_assert_msg(waitpid(b->pid, &status, WNOHANG) == 0, "mosquitto exited at start (see %s)", log);
        ck_assert_msg(tries < 500, "mosquitto did not listen on %d within 10 s", port);
        usleep(20000);
    }
}

static void s_broker_stop(s_broker *b)
{
    kill(b->pid, SIGTERM);
    waitpid(b->pid, NULL, 0);
}

/* A subscriber to plant/# at QoS 1 that keeps what it receives. */
typedef struct s_sub {
    struct mosquitto *mosq;
    bool subscribed;
    size_t n;
    char topic[8][128];
    char payload[8][1024];
} s_sub;

static void s_sub_on_connect(struct mosquitto *mosq, void *obj, int rc)
{
    (void)obj;
    if (rc == 0)
        mosquitto_subscribe(mosq, NULL, "plant/#", 1);
}

static void s_sub_on_subscribe(struct mosquitto *mosq, void *obj, int mid, int n, const int *qos)
{
    (void)mosq, (void)mid, (void)n, (void)qos;
    ((s_sub *)obj)->subscribed = true;
}

static void s_sub_on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg)
{
    (void)mosq;
    s_sub *s = obj;
    if (s->n < 8) {
        snprintf(s->topic[s->n], sizeof s->topic[0], "%s", msg->topic);
        snprintf(s->payload[s->n], sizeof s->payload[0], "%.*s", msg->payloadlen, (const char *)msg->payload);
    }
    s->n++;
}

static void s_sub_loop_until(s_sub *s, bool *flag, size_t count)
{
    for (int i = 0; i < 500 && !(flag ? *flag : s->n >= count); i++)
        ck_assert_int_eq(mosquitto_loop(s->mosq, 20, 1), MOSQ_ERR_SUCCESS);
    ck_assert_msg(flag ? *flag : s->n >= count, "subscriber: %zu of %zu messages within 10 s", s->n, count);
}

static void s_sub_start(s_sub *s, int port)
{
    mosquitto_lib_init();
    *s = (s_sub){0};
    s->mosq = mosquitto_new("ew-test-sub", true, s);
    ck_assert_ptr_nonnull(s->mosq);
    mosquitto_connect_callback_set(s->mosq, s_sub_on_connect);
    mosquitto_subscribe_callback_set(s->mosq, s_sub_on_subscribe);
    mosquitto_message_callback_set(s->mosq, s_sub_on_message);
    ck_assert_int_eq(mosquitto_connect(s->mosq, "127.0.0.1", port, 30), MOSQ_ERR_SUCCESS);
    s_sub_loop_until(s, &s->subscribed, 0);
}

static ew_harness *s_event_sink(int port, const char *drain, const char *const *extra)
{
    ew_harness *h = ew_harness_new(ew_plugin_entry(), ptest_suite_dir());
    char url[64];
    snprintf(url, sizeof url, "mqtt://127.0.0.1:%d", port);
    ew_harness_option(h, "broker", url);
    ew_harness_option(h, "topic", "plant/{node}/events");
    ew_harness_option(h, "drain_timeout", drain);
    for (size_t i = 0; extra && extra[i]; i += 2)
        ew_harness_option(h, extra[i], extra[i + 1]);
    ew_harness_input(h, 2, (const char *[]){"temp", "pressure"});
    int rc = ew_harness_init(h);
    PTEST_ASSERT_INIT(h, rc);
    return h;
}

/* An event accepted while the broker is down is in the spool, survives the
 * restart of the sink, and reaches the subscriber first once the broker is up,
 * then the samples and events of the new run, in order, each once, with seq. */
START_TEST(events_spooled_while_down_reach_the_broker_in_order)
{
    int port = s_dead_port();
    ew_harness *h = s_event_sink(port, "0", NULL);
    ew_event open = ptest_event(EW_EVENT_OPEN, 1), closed = ptest_event(EW_EVENT_CLOSED, 1);
    ck_assert_int_eq(ew_harness_consume_event(h, &open), EW_OK);
    ck_assert_uint_eq(ew_harness_counter(h, "mqtt_spooled"), 1);
    ck_assert_int_gt(s_spool_bytes(), 24 + 2 + (long)strlen(PTEST_EVENT_OPEN_JSON)); /* on disk now */
    ck_assert_int_eq(ew_harness_flush(h), EW_OK);
    ew_harness_destroy(&h);

    s_broker b;
    s_broker_start(&b, port, NULL);
    s_sub sub;
    s_sub_start(&sub, port);
    h = s_event_sink(port, "10s", NULL);
    const int64_t ts[] = {PTEST_EVENT_START + 1000};
    const double v[] = {71.5, 2.5};
    ck_assert_int_eq(ew_harness_consume(h, 1, ts, v), EW_OK);
    ck_assert_int_eq(ew_harness_consume_event(h, &closed), EW_OK);
    ck_assert_int_eq(ew_harness_flush(h), EW_OK); /* sends until the spool is empty */
    ck_assert_uint_eq(ew_harness_counter(h, "mqtt_published"), 3);
    ew_harness_destroy(&h);
    s_sub_loop_until(&sub, NULL, 3);
    for (int i = 0; i < 10; i++) /* anything more (a duplicate) would arrive now */
        mosquitto_loop(sub.mosq, 20, 1);
    ck_assert_uint_eq(sub.n, 3);
    ck_assert_str_eq(sub.topic[0], "plant/pump_z/events");
    char want[1024];
    snprintf(want, sizeof want, "{\"seq\":1,%s", PTEST_EVENT_OPEN_JSON + 1);
    ck_assert_str_eq(sub.payload[0], want);
    ck_assert_str_eq(sub.topic[1], "plant/upstream/events");
    ck_assert_msg(strncmp(sub.payload[1], "{\"seq\":2,\"ts\":\"2026-11-26T16:35:03.123457Z\",\"node\":\"upstream\"", 61) == 0,
                  "%s", sub.payload[1]);
    ck_assert_str_eq(sub.topic[2], "plant/pump_z/events");
    snprintf(want, sizeof want, "{\"seq\":3,%s", PTEST_EVENT_CLOSED_JSON + 1);
    ck_assert_str_eq(sub.payload[2], want);
    mosquitto_destroy(sub.mosq);
    s_broker_stop(&b);
}
END_TEST

/* While the broker refuses us the event is spooled once and reported as
 * transient; the host's retries of it do not spool it again. */
START_TEST(refused_event_is_spooled_once_and_held)
{
    char pwfile[600], cmd[1400];
    snprintf(pwfile, sizeof pwfile, "%s/passwd", ptest_suite_dir());
    snprintf(cmd, sizeof cmd, "mosquitto_passwd -c -b '%s' edge right >/dev/null 2>&1", pwfile);
    ck_assert_int_eq(system(cmd), 0);
    int port = s_dead_port();
    s_broker b;
    s_broker_start(&b, port, pwfile);
    setenv("EW_TEST_MQTT_PASSWORD", "wrong", 1);
    ew_harness *h = s_event_sink(port, "0",
                                 (const char *[]){"username", "edge", "password_env", "EW_TEST_MQTT_PASSWORD", NULL});
    ew_event first = ptest_event(EW_EVENT_OPEN, 1), second = ptest_event(EW_EVENT_CLOSED, 1);
    int rc = ew_harness_consume_event(h, &first); /* before the refusal is known, or after */
    ck_assert_msg(rc == EW_OK || rc == EW_EAGAIN, "%d: %s", rc, ew_harness_error(h));
    for (int i = 0; i < 500 && ew_harness_logged(h, EW_LOG_ERROR) == 0; i++)
        ptest_nap();
    ck_assert_uint_ge(ew_harness_logged(h, EW_LOG_ERROR), 1);
    ck_assert_int_eq(ew_harness_consume_event(h, &second), EW_EAGAIN);
    ck_assert_msg(strstr(ew_harness_error(h), "refused the connection") && strstr(ew_harness_error(h), "spooled"),
                  "%s", ew_harness_error(h));
    ck_assert_uint_eq(ew_harness_counter(h, "mqtt_spooled"), 2);
    ck_assert_int_eq(ew_harness_consume_event(h, &second), EW_EAGAIN);
    ck_assert_int_eq(ew_harness_consume_event(h, &second), EW_EAGAIN);
    ck_assert_uint_eq(ew_harness_counter(h, "mqtt_spooled"), 2);
    /* Stopping: the spooled event counts as delivered (it goes at the next start). */
    ew_harness_request_stop(h);
    ck_assert_int_eq(ew_harness_consume_event(h, &second), EW_OK);
    ck_assert_uint_eq(ew_harness_counter(h, "mqtt_spooled"), 2);
    ck_assert_uint_eq(ew_harness_counter(h, "mqtt_published"), 0);
    ew_harness_flush(h);
    ew_harness_destroy(&h);
    s_broker_stop(&b);
}
END_TEST

START_TEST(bad_event_is_refused_clearly)
{
    ew_harness *h = s_event_sink(s_dead_port(), "0", NULL);
    ew_event ev = ptest_event(EW_EVENT_OPEN, 2);
    ev.node = "";
    ck_assert_int_eq(ew_harness_consume_event(h, &ev), EW_ERR);
    ck_assert_msg(strstr(ew_harness_error(h), "event 2 names no detector node"), "%s", ew_harness_error(h));
    ck_assert_uint_eq(ew_harness_counter(h, "mqtt_spooled"), 0);
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
    tcase_add_test(tc, test_spool_damaged_byte_keeps_every_later_record);
    tcase_add_test(tc, test_spool_damaged_tail_never_reuses_ids);
    tcase_add_test(tc, test_sink_reports_spool_corruption);
    tcase_add_test(tc, events_spooled_while_down_reach_the_broker_in_order);
    tcase_add_test(tc, refused_event_is_spooled_once_and_held);
    tcase_add_test(tc, bad_event_is_refused_clearly);
    suite_add_tcase(s, tc);
    return ptest_run(s);
}
