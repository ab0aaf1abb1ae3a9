/* The alert events the sink tests deliver (test_jsonl.c, test_mqtt.c, test_zmq_sink.c,
 * test_null.c): one open and one closed event of the same id, and the exact JSON
 * every sink must write for them (ewp_json_event), so all sinks are held to one text. */
#ifndef EW_TESTS_PTEST_EVENT_H
#define EW_TESTS_PTEST_EVENT_H

#include <edgewatch/plugin.h>

/* 2026-11-26T16:35:03.123456789Z */
#define PTEST_EVENT_START 1795710903123456789LL

static const ew_event_channel ptest_event_channels[] = {{"temp", 0.75}, {"say \"hi\"", 0.25}};

/* Event `id` of node "pump_z", open (end 0, 1 sample so far) or closed 12.5 s after
 * its start with 250 samples; peak 0.97 two seconds in; channels temp then say "hi". */
static inline ew_event ptest_event(ew_event_state state, uint64_t id)
{
    bool closed = state == EW_EVENT_CLOSED;
    return (ew_event){.struct_size = sizeof(ew_event),
                      .state = state,
                      .node = "pump_z",
                      .id = id,
                      .start = PTEST_EVENT_START,
                      .end = closed ? PTEST_EVENT_START + 12500000000LL : 0,
                      .peak_ts = PTEST_EVENT_START + 2000000000LL,
                      .peak_score = 0.97,
                      .samples = closed ? 250 : 1,
                      .n_channels = 2,
                      .channels = ptest_event_channels};
}

/* What ptest_event(EW_EVENT_OPEN, 1) and ptest_event(EW_EVENT_CLOSED, 1) render to. */
#define PTEST_EVENT_OPEN_JSON                                                                       \
    "{\"ts\":\"2026-11-26T16:35:03.123456Z\",\"node\":\"pump_z\",\"event\":\"open\",\"id\":1,"   \
    "\"start\":\"2026-11-26T16:35:03.123456Z\",\"end\":null,\"duration_s\":0,\"peak_score\":0.97," \
    "\"peak_ts\":\"2026-11-26T16:35:05.123456Z\",\"samples\":1,\"channels\":[{\"name\":\"temp\","  \
    "\"share\":0.75},{\"name\":\"say \\\"hi\\\"\",\"share\":0.25}]}"
#define PTEST_EVENT_CLOSED_JSON                                                                     \
    "{\"ts\":\"2026-11-26T16:35:15.623456Z\",\"node\":\"pump_z\",\"event\":\"closed\",\"id\":1,"  \
    "\"start\":\"2026-11-26T16:35:03.123456Z\",\"end\":\"2026-11-26T16:35:15.623456Z\","            \
    "\"duration_s\":12.5,\"peak_score\":0.97,\"peak_ts\":\"2026-11-26T16:35:05.123456Z\","          \
    "\"samples\":250,\"channels\":[{\"name\":\"temp\",\"share\":0.75},{\"name\":\"say "             \
    "\\\"hi\\\"\",\"share\":0.25}]}"

#endif
