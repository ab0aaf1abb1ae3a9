/* Unit tests for core/bus.c: DATA, EOS and EVENT frames, their layout and alignment, and every decode refusal. */
#include "bus.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An 8-byte aligned scratch area for hand-made frames. */
typedef struct frame_buf {
    uint64_t words[64];
} frame_buf;

/* Writes a header the way bus.h documents it. */
static void s_header(void *at, uint32_t magic, uint16_t type, uint32_t count, uint32_t channels)
{
    unsigned char *p = at;
    memset(p, 0, BUS_HEADER_SIZE);
    memcpy(p + 0, &magic, 4);
    memcpy(p + 4, &type, 2);
    memcpy(p + 8, &count, 4);
    memcpy(p + 12, &channels, 4);
}

static int s_decode(const void *data, size_t size, uint32_t expect, bus_frame *f, char *err, size_t errlen)
{
    err[0] = '\0';
    return bus_decode(data, size, expect, f, err, errlen);
}

START_TEST(test_frame_size)
{
    ck_assert_uint_eq(bus_frame_size(1, 0), 40);
    ck_assert_uint_eq(bus_frame_size(1, 1), 48);
    ck_assert_uint_eq(bus_frame_size(3, 2), 32 + 3 * 8 + 6 * 8);
    ck_assert_uint_eq(bus_frame_size(BUS_MAX_COUNT, BUS_MAX_CHANNELS),
                      32 + (size_t)BUS_MAX_COUNT * 8 + (size_t)BUS_MAX_COUNT * BUS_MAX_CHANNELS * 8);
}
END_TEST

START_TEST(test_data_round_trip)
{
    const uint32_t count = 3, channels = 2;
    zmq_msg_t msg;
    int64_t *ts = NULL;
    double *values = NULL;
    ck_assert_int_eq(bus_msg_data(&msg, count, channels, &ts, &values), 0);
    ck_assert_uint_eq(zmq_msg_size(&msg), bus_frame_size(count, channels));
    const int64_t want_ts[3] = {1700000000000000001, -5, INT64_MAX};
    const double want_v[6] = {1.5, -2.25, 0.0, 1e300, -0.0, 3.141592653589793};
    memcpy(ts, want_ts, sizeof want_ts);
    memcpy(values, want_v, sizeof want_v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    ck_assert_int_eq(memcmp(zmq_msg_data(&msg), "EWB1", 4), 0);
#endif

    /* Through a real inproc edge, as nodes send it. */
    void *ctx = zmq_ctx_new();
    void *tx = zmq_socket(ctx, ZMQ_PAIR), *rx = zmq_socket(ctx, ZMQ_PAIR);
    ck_assert_int_eq(zmq_bind(rx, "inproc://bus-test"), 0);
    ck_assert_int_eq(zmq_connect(tx, "inproc://bus-test"), 0);
    ck_assert_int_eq(zmq_msg_send(&msg, tx, 0), (int)bus_frame_size(count, channels));
    zmq_msg_t got;
    zmq_msg_init(&got);
    ck_assert_int_eq(zmq_msg_recv(&got, rx, 0), (int)bus_frame_size(count, channels));

    bus_frame f;
    char err[200];
    ck_assert_int_eq(s_decode(zmq_msg_data(&got), zmq_msg_size(&got), channels, &f, err, sizeof err), 0);
    ck_assert_str_eq(err, "");
    ck_assert_int_eq(f.type, BUS_DATA);
    ck_assert_uint_eq(f.count, count);
    ck_assert_uint_eq(f.channels, channels);
    for (uint32_t i = 0; i < count; i++)
        ck_assert_int_eq(f.ts[i], want_ts[i]);
    /* Bit-exact, including -0.0. */
    ck_assert_int_eq(memcmp(f.values, want_v, sizeof want_v), 0);
    /* Any width is accepted when none is expected. */
    ck_assert_int_eq(s_decode(zmq_msg_data(&got), zmq_msg_size(&got), 0, &f, err, sizeof err), 0);
    ck_assert_uint_eq(f.channels, channels);
    zmq_msg_close(&got);
    zmq_close(tx);
    zmq_close(rx);
    zmq_ctx_term(ctx);
}
END_TEST

START_TEST(test_data_layout_and_alignment)
{
    static const uint32_t shapes[][2] = {{1, 0}, {1, 1}, {1, 3}, {2, 1}, {3, 5}, {7, 7}, {1000, 1},
                                         {1, BUS_MAX_CHANNELS}, {BUS_MAX_COUNT, 1}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        uint32_t count = shapes[i][0], channels = shapes[i][1];
        zmq_msg_t msg;
        int64_t *ts;
        double *values;
        ck_assert_int_eq(bus_msg_data(&msg, count, channels, &ts, &values), 0);
        unsigned char *base = zmq_msg_data(&msg);
        ck_assert_msg(((uintptr_t)ts & 7u) == 0, "ts of %ux%u not aligned", count, channels);
        ck_assert_msg(((uintptr_t)values & 7u) == 0, "values of %ux%u not aligned", count, channels);
        ck_assert_ptr_eq((void *)ts, (void *)(base + BUS_HEADER_SIZE));
        ck_assert_ptr_eq((void *)values, (void *)(ts + count));
        ts[count - 1] = 42;
        if (channels)
            values[(size_t)count * channels - 1] = 4.5;
        bus_frame f;
        char err[200];
        ck_assert_int_eq(s_decode(base, zmq_msg_size(&msg), channels, &f, err, sizeof err), 0);
        ck_assert_ptr_eq((const void *)f.ts, (void *)ts);
        ck_assert_ptr_eq((const void *)f.values, (void *)values);
        ck_assert_int_eq(f.ts[count - 1], 42);
        if (channels)
            ck_assert_double_eq(f.values[(size_t)count * channels - 1], 4.5);
        zmq_msg_close(&msg);
    }
}
END_TEST

START_TEST(test_data_limits)
{
    zmq_msg_t msg;
    int64_t *ts = NULL;
    double *values = NULL;
    ck_assert_int_eq(bus_msg_data(&msg, 0, 1, &ts, &values), -1);
    ck_assert_int_eq(bus_msg_data(&msg, BUS_MAX_COUNT + 1, 1, &ts, &values), -1);
    ck_assert_int_eq(bus_msg_data(&msg, 1, BUS_MAX_CHANNELS + 1, &ts, &values), -1);
    ck_assert_ptr_null(ts);
    ck_assert_ptr_null(values);
}
END_TEST

START_TEST(test_eos)
{
    zmq_msg_t msg;
    ck_assert_int_eq(bus_msg_eos(&msg), 0);
    ck_assert_uint_eq(zmq_msg_size(&msg), BUS_HEADER_SIZE);
    frame_buf b;
    memcpy(b.words, zmq_msg_data(&msg), BUS_HEADER_SIZE);
    zmq_msg_close(&msg);
    bus_frame f;
    memset(&f, 0xff, sizeof f);
    char err[200];
    ck_assert_int_eq(s_decode(b.words, BUS_HEADER_SIZE, 4, &f, err, sizeof err), 0);
    ck_assert_int_eq(f.type, BUS_EOS);
    ck_assert_uint_eq(f.count, 0);
    ck_assert_uint_eq(f.channels, 0);
    ck_assert_ptr_null(f.ts);
    ck_assert_ptr_null(f.values);
    /* An EOS carries nothing. */
    ck_assert_int_eq(s_decode(b.words, BUS_HEADER_SIZE + 8, 4, &f, err, sizeof err), -1);
    ck_assert_str_eq(err, "end-of-stream frame has 8 stray bytes");
}
END_TEST

START_TEST(test_decode_short_and_garbage)
{
    frame_buf b;
    memset(&b, 0, sizeof b);
    bus_frame f;
    char err[200];
    ck_assert_int_eq(s_decode(b.words, 0, 0, &f, err, sizeof err), -1);
    ck_assert_str_eq(err, "frame of 0 bytes is shorter than its header");
    s_header(b.words, BUS_MAGIC, BUS_EOS, 0, 0);
    ck_assert_int_eq(s_decode(b.words, BUS_HEADER_SIZE - 1, 0, &f, err, sizeof err), -1);
    ck_assert_str_eq(err, "frame of 31 bytes is shorter than its header");

    memcpy(b.words, "hello, this is not an edgewatch frame at all", 44);
    ck_assert_int_eq(s_decode(b.words, 44, 0, &f, err, sizeof err), -1);
    uint32_t magic;
    memcpy(&magic, "hell", 4);
    char want[80];
    snprintf(want, sizeof want, "frame has bad magic 0x%08x", magic);
    ck_assert_str_eq(err, want);

    s_header(b.words, BUS_MAGIC ^ 0x100u, BUS_DATA, 1, 1);
    ck_assert_int_eq(s_decode(b.words, bus_frame_size(1, 1), 1, &f, err, sizeof err), -1);
    snprintf(want, sizeof want, "frame has bad magic 0x%08x", BUS_MAGIC ^ 0x100u);
    ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(test_decode_bad_type)
{
    frame_buf b;
    bus_frame f;
    char err[200];
    s_header(b.words, BUS_MAGIC, 9, 1, 1);
    ck_assert_int_eq(s_decode(b.words, bus_frame_size(1, 1), 1, &f, err, sizeof err), -1);
    ck_assert_str_eq(err, "frame has unknown type 9");
    s_header(b.words, BUS_MAGIC, 0, 1, 1);
    ck_assert_int_eq(s_decode(b.words, bus_frame_size(1, 1), 1, &f, err, sizeof err), -1);
    ck_assert_str_eq(err, "frame has unknown type 0");
}
END_TEST

START_TEST(test_decode_bad_counts)
{
    frame_buf b;
    memset(&b, 0, sizeof b);
    bus_frame f;
    char err[200];
    /* Wrong width for the stream. */
    s_header(b.words, BUS_MAGIC, BUS_DATA, 3, 2);
    ck_assert_int_eq(s_decode(b.words, bus_frame_size(3, 2), 3, &f, err, sizeof err), -1);
    ck_assert_str_eq(err, "frame claims 3 samples of 2 channels (expected 1..65536 of 3)");
    ck_assert_int_eq(s_decode(b.words, bus_frame_size(3, 2), 2, &f, err, sizeof err), 0);
    /* No samples. */
    s_header(b.words, BUS_MAGIC, BUS_DATA, 0, 2);
    ck_assert_int_eq(s_decode(b.words, bus_frame_size(0, 2), 0, &f, err, sizeof err), -1);
    ck_assert_str_eq(err, "frame claims 0 samples of 2 channels (expected 1..65536 of 0)");
    /* Too many samples or channels: refused from the header alone. */
    s_header(b.words, BUS_MAGIC, BUS_DATA, BUS_MAX_COUNT + 1, 1);
    ck_assert_int_eq(s_decode(b.words, sizeof b, 1, &f, err, sizeof err), -1);
    ck_assert_str_eq(err, "frame claims 65537 samples of 1 channels (expected 1..65536 of 1)");
    s_header(b.words, BUS_MAGIC, BUS_DATA, UINT32_MAX, UINT32_MAX);
    ck_assert_int_eq(s_decode(b.words, sizeof b, 0, &f, err, sizeof err), -1);
    ck_assert_str_eq(err, "frame claims 4294967295 samples of 4294967295 channels (expected 1..65536 of 0)");
    s_header(b.words, BUS_MAGIC, BUS_DATA, 1, BUS_MAX_CHANNELS + 1);
    ck_assert_int_eq(s_decode(b.words, sizeof b, 0, &f, err, sizeof err), -1);
    ck_assert_str_eq(err, "frame claims 1 samples of 4097 channels (expected 1..65536 of 0)");
}
END_TEST

START_TEST(test_decode_size_mismatch)
{
    frame_buf b;
    memset(&b, 0, sizeof b);
    bus_frame f;
    char err[200];
    s_header(b.words, BUS_MAGIC, BUS_DATA, 3, 2);
    ck_assert_int_eq(s_decode(b.words, 103, 2, &f, err, sizeof err), -1);
    ck_assert_str_eq(err, "frame is 103 bytes but 3 x 2 needs 104");
    ck_assert_int_eq(s_decode(b.words, 112, 2, &f, err, sizeof err), -1);
    ck_assert_str_eq(err, "frame is 112 bytes but 3 x 2 needs 104");
    ck_assert_int_eq(s_decode(b.words, BUS_HEADER_SIZE, 2, &f, err, sizeof err), -1);
    ck_assert_str_eq(err, "frame is 32 bytes but 3 x 2 needs 104");
    ck_assert_int_eq(s_decode(b.words, 104, 2, &f, err, sizeof err), 0);
}
END_TEST

START_TEST(test_decode_misaligned)
{
    frame_buf b;
    memset(&b, 0, sizeof b);
    unsigned char *odd = (unsigned char *)b.words + 4;
    s_header(odd, BUS_MAGIC, BUS_DATA, 1, 1);
    bus_frame f;
    char err[200];
    ck_assert_int_eq(s_decode(odd, bus_frame_size(1, 1), 1, &f, err, sizeof err), -1);
    ck_assert_str_eq(err, "frame is not 8-byte aligned");
}
END_TEST

START_TEST(test_event_round_trip_and_refusals)
{
    ew_event_channel ch[2] = {{"pressure", 0.75}, {"flow", 0.25}};
    ew_event ev = {.struct_size = sizeof ev, .state = EW_EVENT_CLOSED, .node = "det", .id = 7, .start = 10,
                   .end = 20, .peak_ts = 15, .peak_score = 0.9, .samples = 11, .n_channels = 2, .channels = ch};
    zmq_msg_t msg;
    ck_assert_int_eq(bus_msg_event(&msg, &ev), 0);
    bus_frame f;
    char err[200];
    ck_assert_int_eq(s_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), 3, &f, err, sizeof err), 0);
    ck_assert_int_eq(f.type, BUS_EVENT);
    ck_assert_int_eq(f.event.state, EW_EVENT_CLOSED);
    ck_assert_str_eq(f.event.node, "det");
    ck_assert_uint_eq(f.event.id, 7);
    ck_assert_int_eq(f.event.start, 10);
    ck_assert_int_eq(f.event.end, 20);
    ck_assert_int_eq(f.event.peak_ts, 15);
    ck_assert_double_eq(f.event.peak_score, 0.9);
    ck_assert_uint_eq(f.event.samples, 11);
    ck_assert_uint_eq(f.event.n_channels, 2);
    ck_assert_str_eq(f.event.channels[0].name, "pressure");
    ck_assert_double_eq(f.event.channels[1].share, 0.25);
    /* Cut short, or a name without its NUL: refused. */
    ck_assert_int_eq(s_decode(zmq_msg_data(&msg), zmq_msg_size(&msg) - 1, 3, &f, err, sizeof err), -1);
    unsigned char *p = zmq_msg_data(&msg);
    p[zmq_msg_size(&msg) - 1] = 'x';
    ck_assert_int_eq(s_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), 3, &f, err, sizeof err), -1);
    ck_assert_str_eq(err, "event frame has a bad name 2");
    p[BUS_HEADER_SIZE] = 9; /* state */
    ck_assert_int_eq(s_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), 3, &f, err, sizeof err), -1);
    ck_assert_str_eq(err, "event frame has unknown state 9");
    zmq_msg_close(&msg);
    /* More channels than an event may name: not encoded. */
    ev.n_channels = BUS_MAX_EVENT_CHANNELS + 1;
    ck_assert_int_eq(bus_msg_event(&msg, &ev), -1);
}
END_TEST

static Suite *s_suite(void)
{
    Suite *s = suite_create("bus");
    TCase *tc = tcase_create("frames");
    tcase_add_test(tc, test_frame_size);
    tcase_add_test(tc, test_data_round_trip);
    tcase_add_test(tc, test_data_layout_and_alignment);
    tcase_add_test(tc, test_data_limits);
    tcase_add_test(tc, test_eos);
    tcase_add_test(tc, test_decode_short_and_garbage);
    tcase_add_test(tc, test_decode_bad_type);
    tcase_add_test(tc, test_decode_bad_counts);
    tcase_add_test(tc, test_decode_size_mismatch);
    tcase_add_test(tc, test_decode_misaligned);
    tcase_add_test(tc, test_event_round_trip_and_refusals);
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
