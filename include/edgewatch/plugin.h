/* edgewatch plugin SDK: the one header a plugin includes.
 *
 * A plugin is a shared object that exports one function, ew_plugin_entry(),
 * returning a const descriptor (struct ew_plugin). The host reads the
 * descriptor, checks its ABI version, validates the node's INI options
 * against the descriptor's option table, fills the plugin's config struct and
 * then drives the plugin through its lifecycle on the node's own thread:
 *
 *     init -> start -> produce | process | consume (many times) -> flush -> destroy
 *
 * destroy is always called once init has succeeded, even when a later step
 * failed. The plugin reaches the host only through the function table
 * (struct ew_host) it receives in init. See docs/plugin-guide.md and
 * docs/abi.md for the full contract and the versioning policy.
 *
 * C11, no dependency beyond the C library: no ZeroMQ or inih type appears here.
 * The host never changes the locale: strtod and printf behave as in "C".
 */
#ifndef EDGEWATCH_PLUGIN_H
#define EDGEWATCH_PLUGIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ABI version. Same major and a plugin minor not newer than the host's is
 * required to load. Minor bumps only append fields and host functions. */
#define EW_ABI_MAJOR 1
#define EW_ABI_MINOR 2

/* Marks the plugin entry point as exported even under -fvisibility=hidden. */
#if defined(__GNUC__)
#define EW_EXPORT __attribute__((visibility("default")))
#define EW_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define EW_EXPORT
#define EW_PRINTF(f, a)
#endif

/* Return codes of every callback and host function: 0 or a small negative code. */
enum ew_status {
    EW_OK = 0,          /* success */
    EW_ERR = -1,        /* fatal: the host stops the graph, exit code 1 */
    EW_EAGAIN = -2,     /* transient (device unreachable): the host backs off and retries */
    EW_EOF = -3,        /* a source's stream has ended; the host sends end-of-stream */
    EW_ENOENT = -4,     /* no such state file (or it was corrupt and moved aside) */
    EW_ESTOP = -5,      /* the host is stopping: return from the callback promptly */
    EW_EINVAL = -6,     /* invalid argument to a host function */
};

/* What a plugin is; with its name this identifies it. */
typedef enum ew_kind {
    EW_KIND_SOURCE = 1,   /* produces samples from a device, file or generator */
    EW_KIND_DETECTOR = 2, /* scores every sample of its input stream */
    EW_KIND_SINK = 3,     /* delivers samples and scores somewhere */
} ew_kind;

/* Severity for ew_host.log. */
typedef enum ew_log_level {
    EW_LOG_ERROR = 0,
    EW_LOG_WARN = 1,
    EW_LOG_INFO = 2,
    EW_LOG_DEBUG = 3,
} ew_log_level;

/* Option value types and the C type each fills in the config struct. */
typedef enum ew_opt_type {
    EW_OPT_STRING = 1,   /* const char *; host-owned, valid until destroy returns */
    EW_OPT_INT = 2,      /* int64_t */
    EW_OPT_DOUBLE = 3,   /* double (finite) */
    EW_OPT_BOOL = 4,     /* bool: true/false, yes/no, on/off, 1/0 */
    EW_OPT_ENUM = 5,     /* int: index of the value in `choices` */
    EW_OPT_DURATION = 6, /* int64_t nanoseconds: "250ms", "1.5s", "2m", "1h"; bare number = seconds */
    EW_OPT_SIZE = 7,     /* uint64_t bytes: "512", "64KiB", "10MB", "1GiB" */
    EW_OPT_LIST = 8,     /* struct ew_list: comma-separated, items trimmed */
    /* --- ABI 1.1 --- */
    EW_OPT_PREFIX = 9,   /* struct ew_kvlist: every key starting with `name` (which ends
                            in '.', e.g. "register."), in file order; for maps whose keys
                            the user chooses, such as one key per channel */
} ew_opt_type;

/* Value of an EW_OPT_LIST option. Host-owned, valid until destroy returns. */
typedef struct ew_list {
    size_t count;              /* number of items */
    const char *const *items;  /* the items, trimmed, never empty strings */
} ew_list;

/* Value of an EW_OPT_PREFIX option (ABI 1.1). Host-owned, valid until destroy returns. */
typedef struct ew_kvlist {
    size_t count;               /* number of keys that matched the prefix */
    const char *const *keys;    /* the part of each key after the prefix */
    const char *const *values;  /* the values, after ${VAR} expansion */
    const int *lines;           /* the line of each key in the config file */
} ew_kvlist;

/* One row of a plugin's option table. The table ends with a row whose name is NULL.
 * The host rejects unknown keys, parses each value by type, checks the range or
 * choices and writes it at `offset` into the plugin's config struct. */
typedef struct ew_option {
    const char *name;          /* key in the INI section: [a-z0-9_]+ */
    ew_opt_type type;          /* how the value is parsed and stored */
    const char *default_value; /* textual default, parsed like user input; NULL = none (zero) */
    bool required;             /* missing key is an error */
    double min, max;           /* inclusive range for INT, DOUBLE, DURATION (seconds), SIZE, LIST
                                  (item count); ignored when min == max == 0 */
    const char *choices;       /* ENUM only: "all|anomalies" */
    size_t offset;             /* offsetof(config struct, field) */
    const char *description;   /* one sentence, shown by `edgewatch describe` */
} ew_option;

/* Convenience initialisers for option rows. */
#define EW_OPTION(name_, type_, def_, struct_, field_, desc_)                                       \
    { .name = (name_), .type = (type_), .default_value = (def_), .offset = offsetof(struct_, field_), \
      .description = (desc_) }
#define EW_OPTION_RANGE(name_, type_, def_, min_, max_, struct_, field_, desc_)                     \
    { .name = (name_), .type = (type_), .default_value = (def_), .min = (min_), .max = (max_),       \
      .offset = offsetof(struct_, field_), .description = (desc_) }
#define EW_OPTION_ENUM(name_, def_, choices_, struct_, field_, desc_)                               \
    { .name = (name_), .type = EW_OPT_ENUM, .default_value = (def_), .choices = (choices_),         \
      .offset = offsetof(struct_, field_), .description = (desc_) }
#define EW_OPTION_REQUIRED(name_, type_, struct_, field_, desc_)                                    \
    { .name = (name_), .type = (type_), .required = true, .offset = offsetof(struct_, field_),       \
      .description = (desc_) }
#define EW_OPTION_END { .name = NULL }

/* The shape of a stream: its channel names in order. Detector output streams
 * carry extra columns that the host appends: the detector's own extra
 * channels, then `score` and `anomaly`. */
typedef struct ew_schema {
    size_t channels;            /* values per sample */
    const char *const *names;   /* channel names, `channels` of them */
    int score_index;            /* column of `score`, or -1 when the stream has none */
    int anomaly_index;          /* column of `anomaly` (0 or 1), or -1 */
} ew_schema;

/* A batch of samples of one stream, row-major: values[i * schema->channels + c]. */
typedef struct ew_batch {
    size_t count;               /* samples in this batch */
    const int64_t *ts;          /* timestamps, ns since the Unix epoch, `count` of them */
    const double *values;       /* count * schema->channels values; NaN marks a missing value */
    const ew_schema *schema;    /* the stream's schema */
    const char *origin;         /* name of the node that produced the stream */
} ew_batch;

/* Where a detector writes its results for a batch of `count` samples. */
typedef struct ew_scores {
    double *score;              /* count scores in [0, 1]; higher = more anomalous */
    uint8_t *anomaly;           /* count flags, 1 = anomalous */
    double *extra;              /* count * extra_channels values (row-major), or NULL */
    size_t extra_channels;      /* as declared with ew_host.add_channels */

    /* --- ABI 1.2 --- (the host fills these with NaN / 0 before process; a plugin
     * built against 1.1 never sees them and gets no calibration of its own raw
     * statistic, no attribution and no learning marks) */

    /* count raw statistics, any scale, higher = more unusual (e.g. |z|, a
     * reconstruction error, T^2 + Q). The host's calibration stage turns them into
     * `score` when the node says calibrate = likelihood; NaN = not written (the host
     * then calibrates `score` itself). Never write an infinite value. */
    double *raw;
    /* count * contrib_channels values, row-major: each input channel's contribution
     * to the sample's raw statistic (>= 0, any scale; the host ranks them by share).
     * NaN = not reported. Events name the channels with the largest shares. */
    double *contrib;
    /* The input schema's channels (the width of a `contrib` row). */
    size_t contrib_channels;
    /* count flags: 1 = the sample was taken to learn the model and is not scored.
     * The host writes such samples with an empty score (null in JSON) and never
     * flags or calibrates them, so that learning is not mistaken for normal. */
    uint8_t *learning;
} ew_scores;

/* One channel named by an event, with its share of the event's contributions. */
typedef struct ew_event_channel {
    const char *name;   /* an input channel of the detector */
    double share;       /* in [0, 1]; the shares of all input channels sum to 1 */
} ew_event_channel;

/* Whether an event has just opened or has ended (ABI 1.2). */
typedef enum ew_event_state {
    EW_EVENT_OPEN = 1,   /* announced when it opens: end and duration are 0 */
    EW_EVENT_CLOSED = 2, /* ended: the whole event */
} ew_event_state;

/* An alert event raised by the host for a detector node (ABI 1.2): it opens when the
 * score reaches the node's alert_on and closes after alert_hold samples below
 * alert_off (see docs/detectors.md). Delivered to sinks set to `only = events`
 * through ew_plugin.consume_event; host-owned, valid during the call only. */
typedef struct ew_event {
    uint32_t struct_size;        /* sizeof(struct ew_event) in the host */
    ew_event_state state;        /* open or closed */
    const char *node;            /* the detector node that raised it */
    uint64_t id;                 /* 1, 2, ... per node and run; open and closed share it */
    int64_t start;               /* timestamp of the first sample at or above alert_on */
    int64_t end;                 /* timestamp of the last sample at or above alert_off; 0 while open */
    int64_t peak_ts;             /* timestamp of the highest score */
    double peak_score;           /* the highest score, in [0, 1] */
    uint64_t samples;            /* samples from start to end (open: so far) */
    size_t n_channels;           /* channels named, at most the node's alert_top */
    const ew_event_channel *channels; /* ranked, largest share first; empty without attribution */
} ew_event;

typedef struct ew_node ew_node;       /* the host's node; opaque to plugins */
typedef struct ew_counter ew_counter; /* a metric counter; opaque to plugins */

/* The host function table, handed to init. Functions are only ever appended;
 * EW_HOST_HAS tells whether the running host offers one. */
typedef struct ew_host {
    uint32_t struct_size; /* sizeof(struct ew_host) in the host */
    uint16_t abi_major;   /* the host's ABI major */
    uint16_t abi_minor;   /* the host's ABI minor */

    /* --- ABI 1.0 --- */

    /* Logs one line tagged with the node's name. */
    void (*log)(ew_node *node, ew_log_level level, const char *fmt, ...) EW_PRINTF(3, 4);
    /* Sets the message that goes with the error code the callback is about to return. */
    void (*set_error)(ew_node *node, const char *fmt, ...) EW_PRINTF(2, 3);
    /* The node's name as written in the INI section ([detector.pump_z] -> "pump_z"). */
    const char *(*node_name)(ew_node *node);
    /* Wall-clock time in ns since the Unix epoch (CLOCK_REALTIME). */
    int64_t (*now)(ew_node *node);
    /* Monotonic time in ns (CLOCK_MONOTONIC), for pacing and timeouts. */
    int64_t (*monotonic)(ew_node *node);

    /* Sources, in init: declares the output channels. Names are copied; each is 1 to
     * 128 bytes without control characters, and unique in the stream. */
    int (*set_channels)(ew_node *node, size_t count, const char *const *names);
    /* Detectors and sinks, in init: the schema of the (first) input stream. A
     * detector's inputs all share it; a sink with several inputs sees each batch's
     * own schema in ew_batch.schema. */
    const ew_schema *(*input_schema)(ew_node *node);
    /* Detectors, in init: declares extra output channels (e.g. the raw statistic),
     * named by the same rules; `score` and `anomaly` are the host's. */
    int (*add_channels)(ew_node *node, size_t count, const char *const *names);
    /* Sources, in produce: appends one sample (values: one per declared channel).
     * May block while downstream is full. Returns EW_ESTOP, without taking the
     * sample, when the host is stopping at once: produce should then return EW_ESTOP,
     * which the host treats as a normal stop. */
    int (*emit)(ew_node *node, int64_t ts, const double *values);

    /* Saves a per-node state file atomically with a checksummed header. `file` is a
     * bare name ([A-Za-z0-9_.-]+). Returns EW_OK or EW_ERR with the reason logged. */
    int (*state_save)(ew_node *node, const char *file, const void *data, size_t len);
    /* Loads a state file saved by state_save into a malloc'd buffer the caller frees.
     * Returns EW_ENOENT when there is none or when it failed its check (then it has
     * been moved aside and reported); EW_ERR on an I/O error. */
    int (*state_load)(ew_node *node, const char *file, void **data, size_t *len);

    /* Registers a counter exported in /metrics as edgewatch_<name>_total{node="..."}.
     * Call in init. Returns NULL on a bad name: not [a-z0-9_]+, or starting with
     * node_, build_ or uptime_ (the host's own metrics). */
    ew_counter *(*counter)(ew_node *node, const char *name, const char *help);
    /* Adds to a counter; cheap and thread-safe; a NULL counter is ignored. */
    void (*counter_add)(ew_counter *counter, uint64_t delta);
    /* Whether the host is shutting down: for a source, stop producing; for a detector
     * or sink, the stream is draining (a sink may then keep data for the next run,
     * e.g. in its spool, rather than wait for a peer that is down). */
    bool (*stopping)(ew_node *node);

    /* --- ABI 1.1 --- */

    /* Detectors: reports that the model is being learnt (true) or ready (false); shown
     * as the node state `learning` in /health (a healthy state) and /metrics. */
    void (*set_learning)(ew_node *node, bool learning);
    /* The node's own folder under state_dir, created on first call, for files the
     * plugin manages itself (e.g. a sink's spool). NULL, with the reason logged and
     * set as the error, when it cannot be made writable. */
    const char *(*state_path)(ew_node *node);
    /* Reports that the node works but cannot do all of its job (a sink spooling while
     * its broker is unreachable), with the reason; NULL clears it. Shown as the node
     * state `degraded` with the reason in /health (which still answers 200: a restart
     * would not help) and in /metrics. */
    void (*set_degraded)(ew_node *node, const char *reason);

    /* --- ABI 1.2 --- */

    /* Detectors, in init: says that the plugin's own `score` is already calibrated
     * against what it learnt (e.g. limits taken from training data, 0.5 at the
     * limit), so the node's `calibrate = auto` keeps it instead of applying the
     * host's likelihood stage. Without this call auto means likelihood. */
    void (*set_score_calibrated)(ew_node *node, bool calibrated);
} ew_host;

/* True when the running host provides `field` of struct ew_host. */
#define EW_HOST_HAS(host, field) \
    ((host)->struct_size >= offsetof(ew_host, field) + sizeof(((ew_host *)0)->field))

/* The plugin descriptor. Fill the header with EW_PLUGIN_HEADER. */
typedef struct ew_plugin {
    uint32_t struct_size; /* sizeof(struct ew_plugin) the plugin was built with */
    uint16_t abi_major;   /* EW_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor;   /* EW_ABI_MINOR the plugin was built with */

    /* --- ABI 1.0 --- */
    ew_kind kind;               /* source, detector or sink */
    const char *name;           /* [a-z0-9_]+, what users write after plugin = */
    const char *version;        /* the plugin's own version, e.g. "1.2.0" */
    const char *description;    /* one line */
    const char *license;        /* SPDX identifier, e.g. "MIT" */
    const ew_option *options;   /* option table ending with EW_OPTION_END, or NULL */
    size_t config_size;         /* size of the config struct the table fills */

    /* Creates the instance from its validated config (which stays valid until destroy).
     * Sources declare channels here; detectors read input_schema and may add channels.
     * Returns EW_OK and sets *self, or an error code (EW_EAGAIN is treated as EW_ERR). */
    int (*init)(const ew_host *host, ew_node *node, const void *config, void **self);
    /* Called once the whole graph is built, just before data flows. Optional. */
    int (*start)(void *self);
    /* Sources: emits zero or more samples. Sets *wake_at (CLOCK_MONOTONIC ns) to when it
     * wants to be called again; 0 = as soon as possible. Returns EW_OK, EW_EOF at the
     * end of the stream (samples emitted in that same call are delivered first),
     * EW_EAGAIN on a transient fault, EW_ERR on a fatal one. */
    int (*produce)(void *self, int64_t *wake_at);
    /* Sources, optional: a file descriptor whose readability also wakes produce; -1 = none.
     * Asked after start and after every produce call, so it may change on reconnect. */
    int (*poll_fd)(void *self);
    /* Detectors: scores a batch into `out` (arrays sized for in->count). */
    int (*process)(void *self, const ew_batch *in, ew_scores *out);
    /* Sinks: delivers a batch. EW_EAGAIN makes the host retry the same batch later. */
    int (*consume)(void *self, const ew_batch *in);
    /* Called once after the last batch (end of stream or shutdown): write out buffers,
     * save models. Optional. */
    int (*flush)(void *self);
    /* Frees the instance. Always called after a successful init. Optional. */
    void (*destroy)(void *self);

    /* --- ABI 1.1 --- */

    /* Checks the filled config for rules the option table cannot express (overlapping
     * register maps, low > high), without touching devices or files. Called by
     * `edgewatch check` and before init. On failure returns EW_ERR with a message in
     * err and, in *line, the config line at fault (0 = the section). Optional. */
    int (*validate)(const void *config, char *err, size_t errlen, int *line);

    /* --- ABI 1.2 --- */

    /* Sinks, optional: delivers one alert event (a sink set to `only = events` gets
     * these instead of samples). EW_EAGAIN makes the host retry the same event later,
     * as for consume. A sink without it is given no events. */
    int (*consume_event)(void *self, const ew_event *event);
} ew_plugin;

/* True when a descriptor built against an older minor has `field`. */
#define EW_PLUGIN_HAS(plugin, field) \
    ((plugin)->struct_size >= offsetof(ew_plugin, field) + sizeof(((ew_plugin *)0)->field))

/* Fills the descriptor header with the ABI this plugin is being built against. */
#define EW_PLUGIN_HEADER \
    .struct_size = sizeof(ew_plugin), .abi_major = EW_ABI_MAJOR, .abi_minor = EW_ABI_MINOR

/* Name of the entry symbol the host looks up with dlsym. */
#define EW_PLUGIN_ENTRY_SYMBOL "ew_plugin_entry"

/* Signature of the entry symbol. */
typedef const ew_plugin *(*ew_plugin_entry_fn)(void);

/* The entry point every plugin defines with EW_PLUGIN_EXPORT (declared here so a
 * test that links a plugin's objects can call it). */
EW_EXPORT const ew_plugin *ew_plugin_entry(void);

/* Defines the exported entry symbol returning the descriptor `desc`. Use once per plugin. */
#define EW_PLUGIN_EXPORT(desc) \
    EW_EXPORT const ew_plugin *ew_plugin_entry(void) { return &(desc); }

#ifdef __cplusplus
}
#endif

#endif /* EDGEWATCH_PLUGIN_H */
