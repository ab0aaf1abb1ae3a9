/* serial: a source that reads lines (csv, name=value pairs or JSON) from a
 * serial device or pseudo-terminal and emits one sample per line.
 *
 *     [source.scale]
 *     plugin = serial
 *     device = /dev/ttyUSB0
 *     baud = 115200
 *     format = kv
 *     channels = weight, temp
 *
 * The device is opened raw (termios) and non-blocking; the host polls its file
 * descriptor, so produce runs when bytes arrive. A line longer than max_line
 * is discarded up to the next newline. Bad lines are counted and skipped. When
 * the device disappears (unplugged adapter, the far end of a pty closing) the
 * node reports a transient error: the host backs off and retries, and produce
 * reopens the device and resumes.
 */
#include <edgewatch/plugin.h>

#include "ewp_lines.h"
#include "ewplug.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

/* Bytes read per read(2) call and lines handled per produce call at most, so the
 * host's loop (stop requests, batch linger) stays responsive under a flood. */
#define S_READ_CHUNK 65536
#define S_MAX_LINES 4096
#define S_MAX_CHUNKS 16
/* When no data arrived, produce wants to run again after this long anyway: a
 * safety net, since a hang-up shows as POLLHUP, which the host does not wait for. */
#define S_IDLE_NS 200000000LL
/* Longest excerpt of a bad line quoted in a log line. */
#define S_SHOWN 60

enum s_parity { S_PARITY_NONE, S_PARITY_EVEN, S_PARITY_ODD };
enum s_flow { S_FLOW_NONE, S_FLOW_RTSCTS, S_FLOW_XONXOFF };

typedef struct serial_config {
    const char *device;
    int64_t baud;
    int parity;
    int64_t data_bits;
    int64_t stop_bits;
    int flow_control;
    int format;
    ew_list columns;
    ew_list channels;
    int delimiter;
    const char *timestamp_field;
    int timestamp_unit;
    uint64_t max_line;
} serial_config;

typedef struct serial {
    const ew_host *host;
    ew_node *node;
    const serial_config *cfg;
    ewp_lines *parser;
    size_t nch;
    double *values;
    int fd;                 /* -1 while the device is closed */
    char *buf;              /* the line being assembled, max_line bytes */
    size_t len;
    bool discarding;        /* inside an overlong line: drop bytes up to the next newline */
    char *chunk;            /* read(2) buffer */
    unsigned long long lines, bad_lines, long_lines, opens;
    ew_counter *c_lines, *c_bad, *c_long, *c_reopens;
} serial;

static const ew_option s_options[] = {
    EW_OPTION_REQUIRED("device", EW_OPT_STRING, serial_config, device,
                       "Serial device or pseudo-terminal to read, e.g. /dev/ttyUSB0 or "
                       "/dev/serial/by-id/...; reopened when it comes back."),
    EW_OPTION("baud", EW_OPT_INT, "9600", serial_config, baud,
              "Line speed: a standard rate from 50 to 4000000 (e.g. 9600, 115200)."),
    EW_OPTION_ENUM("parity", "none", "none|even|odd", serial_config, parity, "Parity bit."),
    EW_OPTION_RANGE("data_bits", EW_OPT_INT, "8", 5, 8, serial_config, data_bits,
                    "Data bits per character."),
    EW_OPTION_RANGE("stop_bits", EW_OPT_INT, "1", 1, 2, serial_config, stop_bits,
                    "Stop bits per character."),
    EW_OPTION_ENUM("flow_control", "none", "none|rtscts|xonxoff", serial_config, flow_control,
                   "Flow control: none, hardware (RTS/CTS) or software (XON/XOFF)."),
    EW_OPTION_ENUM("format", "csv", "csv|kv|json", serial_config, format,
                   "Line format: delimited fields, name=value pairs, or one JSON object per line."),
    EW_OPTION("columns", EW_OPT_LIST, NULL, serial_config, columns,
              "csv: the name of every field of a line, in order (required with csv)."),
    EW_OPTION("channels", EW_OPT_LIST, NULL, serial_config, channels,
              "Names to emit, in order (kv, json: required; csv: default every column but the "
              "timestamp); a name missing from a line is NaN."),
    EW_OPTION_ENUM("delimiter", "comma", EWP_LINES_DELIMITERS, serial_config, delimiter,
                   "csv: field separator (space = runs of spaces or tabs)."),
    EW_OPTION("timestamp_field", EW_OPT_STRING, "", serial_config, timestamp_field,
              "Field holding the sample time (ISO-8601 or epoch); empty = time of arrival."),
    EW_OPTION_ENUM("timestamp_unit", "auto", "auto|s|ms|us|ns", serial_config, timestamp_unit,
                   "Unit of numeric timestamps; auto: below 1e11 seconds, below 1e14 milliseconds, "
                   "below 1e17 microseconds, else nanoseconds."),
    EW_OPTION_RANGE("max_line", EW_OPT_SIZE, "4096", 16, 1048576, serial_config, max_line,
                    "Longest line in bytes; a longer one is discarded up to the next newline and "
                    "counted as bad."),
    EW_OPTION_END,
};

static const struct {
    int64_t rate;
    speed_t code;
} s_bauds[] = {
    {50, B50}, {75, B75}, {110, B110}, {134, B134}, {150, B150}, {200, B200}, {300, B300},
    {600, B600}, {1200, B1200}, {1800, B1800}, {2400, B2400}, {4800, B4800}, {9600, B9600},
    {19200, B19200}, {38400, B38400}, {57600, B57600}, {115200, B115200}, {230400, B230400},
    {460800, B460800}, {500000, B500000}, {576000, B576000}, {921600, B921600},
    {1000000, B1000000}, {1152000, B1152000}, {1500000, B1500000}, {2000000, B2000000},
    {2500000, B2500000}, {3000000, B3000000}, {3500000, B3500000}, {4000000, B4000000},
};

static bool s_baud_code(int64_t rate, speed_t *code)
{
    for (size_t i = 0; i < sizeof s_bauds / sizeof s_bauds[0]; i++) {
        if (s_bauds[i].rate == rate) {
            *code = s_bauds[i].code;
            return true;
        }
    }
    return false;
}

static void s_spec(const serial_config *cfg, ewp_lines_spec *spec)
{
    *spec = (ewp_lines_spec){
        .format = (ewp_lines_format)cfg->format,
        .ncolumns = cfg->columns.count,
        .columns = cfg->columns.items,
        .nchannels = cfg->channels.count,
        .channels = cfg->channels.items,
        .timestamp_field = cfg->timestamp_field,
        .delimiter = cfg->delimiter,
        .ts_unit = (ewp_lines_ts_unit)cfg->timestamp_unit,
    };
}

static int s_validate(const void *config, char *err, size_t errlen, int *line)
{
    const serial_config *cfg = config;
    *line = 0;
    speed_t code;
    if (!cfg->device[0]) {
        snprintf(err, errlen, "option device is empty: name the serial device, e.g. /dev/ttyUSB0");
        return EW_ERR;
    }
    if (!s_baud_code(cfg->baud, &code)) {
        snprintf(err, errlen,
                 "option baud: %lld is not a standard rate; use one of 1200, 2400, 4800, 9600, "
                 "19200, 38400, 57600, 115200, 230400, 460800, 921600 (50 to 4000000 in all)",
                 (long long)cfg->baud);
        return EW_ERR;
    }
    if (cfg->format != EWP_LINES_CSV && cfg->columns.count) {
        snprintf(err, errlen, "option columns is for format = csv only; use channels to name the "
                              "values to emit");
        return EW_ERR;
    }
    ewp_lines_spec spec;
    s_spec(cfg, &spec);
    return ewp_lines_check(&spec, err, errlen) < 0 ? EW_ERR : EW_OK;
}

static void s_close(serial *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->len = 0;
    s->discarding = false;
}

static void s_destroy(void *self)
{
    serial *s = self;
    if (!s)
        return;
    s_close(s);
    ewp_lines_free(&s->parser);
    free(s->values);
    free(s->buf);
    free(s->chunk);
    free(s);
}

static int s_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    const serial_config *cfg = config;
    serial *s = calloc(1, sizeof *s);
    if (!s) {
        host->set_error(node, "out of memory creating the serial source");
        return EW_ERR;
    }
    s->host = host;
    s->node = node;
    s->cfg = cfg;
    s->fd = -1;
    ewp_lines_spec spec;
    s_spec(cfg, &spec);
    char err[256];
    if (ewp_lines_check(&spec, err, sizeof err) < 0) {
        host->set_error(node, "%s", err);
        free(s);
        return EW_EINVAL;
    }
    s->parser = ewp_lines_new(&spec);
    s->buf = malloc(cfg->max_line);
    s->chunk = malloc(S_READ_CHUNK);
    if (s->parser)
        s->nch = ewp_lines_channels(s->parser);
    s->values = s->parser ? calloc(s->nch, sizeof *s->values) : NULL;
    if (!s->parser || !s->buf || !s->chunk || !s->values) {
        host->set_error(node, "out of memory creating the serial source");
        s_destroy(s);
        return EW_ERR;
    }
    int rc = host->set_channels(node, s->nch, ewp_lines_channel_names(s->parser));
    if (rc != EW_OK) {
        s_destroy(s);
        return rc;
    }
    s->c_lines = host->counter(node, "serial_lines", "Lines read by the serial source (good and bad)");
    s->c_bad = host->counter(node, "serial_bad_lines",
                             "Lines the serial source skipped: unparsable, binary, overlong");
    s->c_long = host->counter(node, "serial_overlong_lines",
                              "Lines longer than max_line, discarded (also counted as bad)");
    s->c_reopens = host->counter(node, "serial_reopens", "Times the serial device was reopened");
    *self = s;
    return EW_OK;
}

/* Opens and configures the device. Returns EW_OK, EW_EAGAIN (the device may
 * come back: missing, gone, busy) or EW_ERR (it never will work: not a tty). */
static int s_open(serial *s)
{
    const serial_config *cfg = s->cfg;
    int fd = open(cfg->device, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        s->host->set_error(s->node, "cannot open %s: %s%s", cfg->device, strerror(e),
                           e == ENOENT || e == ENXIO || e == ENODEV
                               ? " (is the device plugged in? retrying)"
                           : e == EACCES ? " (is the user in the dialout group? retrying)"
                                         : "; retrying");
        return EW_EAGAIN;
    }
    struct termios tio;
    if (tcgetattr(fd, &tio) < 0) {
        int e = errno;
        close(fd);
        if (e == ENOTTY || e == EINVAL) {
            s->host->set_error(s->node, "%s is not a serial device or terminal (%s): set device "
                                        "to a tty such as /dev/ttyUSB0",
                               cfg->device, strerror(e));
            return EW_ERR;
        }
        s->host->set_error(s->node, "cannot read the settings of %s: %s; retrying", cfg->device,
                           strerror(e));
        return EW_EAGAIN;
    }
    cfmakeraw(&tio);
    speed_t code = B9600;
    s_baud_code(cfg->baud, &code);
    cfsetispeed(&tio, code);
    cfsetospeed(&tio, code);
    static const tcflag_t sizes[] = {CS5, CS6, CS7, CS8};
    tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | PARODD | CSTOPB | CRTSCTS);
    tio.c_cflag |= sizes[cfg->data_bits - 5] | CREAD | CLOCAL;
    if (cfg->parity != S_PARITY_NONE) {
        tio.c_cflag |= PARENB;
        if (cfg->parity == S_PARITY_ODD)
            tio.c_cflag |= PARODD;
        tio.c_iflag |= INPCK;
    }
    if (cfg->stop_bits == 2)
        tio.c_cflag |= CSTOPB;
    tio.c_iflag &= ~(tcflag_t)(IXON | IXOFF | IXANY);
    if (cfg->flow_control == S_FLOW_RTSCTS)
        tio.c_cflag |= CRTSCTS;
    else if (cfg->flow_control == S_FLOW_XONXOFF)
        tio.c_iflag |= IXON | IXOFF;
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    if (tcsetattr(fd, TCSANOW, &tio) < 0) {
        int e = errno;
        close(fd);
        s->host->set_error(s->node, "cannot configure %s (%lld baud, %lld data bits): %s; retrying",
                           cfg->device, (long long)cfg->baud, (long long)cfg->data_bits,
                           strerror(e));
        return EW_EAGAIN;
    }
    s->fd = fd;
    s->len = 0;
    s->discarding = false;
    if (s->opens++ > 0) {
        s->host->counter_add(s->c_reopens, 1);
        s->host->log(s->node, EW_LOG_INFO, "%s reopened", cfg->device);
    } else {
        s->host->log(s->node, EW_LOG_INFO, "%s opened at %lld baud", cfg->device,
                     (long long)cfg->baud);
    }
    return EW_OK;
}

static int s_start(void *self)
{
    serial *s = self;
    int rc = s_open(s);
    /* A device that is not there yet is no reason not to start: produce retries. */
    return rc == EW_EAGAIN ? EW_OK : rc;
}

static void s_bad(serial *s, const char *line, size_t len, const char *why)
{
    s->bad_lines++;
    s->host->counter_add(s->c_bad, 1);
    if (!ewp_should_report(s->bad_lines))
        return;
    char shown[S_SHOWN * 4 + 8];
    ewp_lines_excerpt(line, len, S_SHOWN, shown, sizeof shown);
    s->host->log(s->node, EW_LOG_WARN, "%s: bad line skipped: %s: \"%s\" (%llu bad lines so far)",
                 s->cfg->device, why, shown, s->bad_lines);
}

/* Parses and emits one complete line (without its newline). */
static int s_line(serial *s, const char *line, size_t len)
{
    /* Blank lines (a bare CR LF between records) are not records. */
    size_t i = 0;
    while (i < len && (line[i] == '\r' || line[i] == ' ' || line[i] == '\t'))
        i++;
    if (i == len)
        return EW_OK;
    s->lines++;
    s->host->counter_add(s->c_lines, 1);
    int64_t ts = 0;
    bool has_ts = false;
    char why[256];
    if (ewp_lines_parse(s->parser, line, len, &ts, &has_ts, s->values, why, sizeof why) < 0) {
        s_bad(s, line, len, why);
        return EW_OK;
    }
    return s->host->emit(s->node, has_ts ? ts : s->host->now(s->node), s->values);
}

/* Splits freshly read bytes into lines. */
static int s_feed(serial *s, const char *data, size_t n, size_t *done_lines)
{
    size_t max = s->cfg->max_line;
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) : n;
        if (s->discarding) {
            if (nl)
                s->discarding = false;
        } else if (s->len + take > max) {
            s->lines++;
            s->host->counter_add(s->c_lines, 1);
            s->long_lines++;
            s->host->counter_add(s->c_long, 1);
            char why[96];
            snprintf(why, sizeof why, "longer than max_line (%zu bytes)", max);
            /* Quote the line's start: what was kept, or these bytes when it began here. */
            if (s->len)
                s_bad(s, s->buf, s->len, why);
            else
                s_bad(s, data, take, why);
            s->len = 0;
            s->discarding = nl == NULL;
        } else {
            memcpy(s->buf + s->len, data, take);
            s->len += take;
            if (nl) {
                int rc = s_line(s, s->buf, s->len);
                s->len = 0;
                (*done_lines)++;
                if (rc != EW_OK)
                    return rc;
            }
        }
        if (!nl)
            break;
        data += take + 1;
        n -= take + 1;
    }
    return EW_OK;
}

static int s_gone(serial *s, const char *what)
{
    s->host->set_error(s->node, "%s: %s; closed, will reopen when it is back", s->cfg->device, what);
    s_close(s);
    return EW_EAGAIN;
}

static int s_produce(void *self, int64_t *wake_at)
{
    serial *s = self;
    if (s->fd < 0) {
        int rc = s_open(s);
        if (rc != EW_OK)
            return rc;
    }
    size_t lines = 0, chunks = 0;
    while (lines < S_MAX_LINES && chunks++ < S_MAX_CHUNKS) {
        ssize_t n = read(s->fd, s->chunk, S_READ_CHUNK);
        if (n > 0) {
            int rc = s_feed(s, s->chunk, (size_t)n, &lines);
            if (rc != EW_OK)
                return rc;
            continue;
        }
        if (n == 0)
            return s_gone(s, "end of file (the far end closed)");
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            char what[128];
            snprintf(what, sizeof what, "read failed: %s", strerror(errno));
            return s_gone(s, what);
        }
        /* No data now. A pty whose master closed may still say EAGAIN here
         * while poll reports the hang-up: ask directly. */
        struct pollfd pfd = {s->fd, POLLIN, 0};
        if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLERR | POLLNVAL)) &&
            !(pfd.revents & POLLIN))
            return s_gone(s, "hung up (the far end closed or the device was removed)");
        *wake_at = s->host->monotonic(s->node) + S_IDLE_NS;
        return EW_OK;
    }
    *wake_at = 0; /* more may be waiting: come back at once */
    return EW_OK;
}

static int s_poll_fd(void *self)
{
    const serial *s = self;
    return s->fd;
}

static int s_flush(void *self)
{
    serial *s = self;
    s->host->log(s->node, EW_LOG_INFO,
                 "%s: %llu lines read, %llu bad lines skipped (%llu overlong), %llu reopens",
                 s->cfg->device, s->lines, s->bad_lines, s->long_lines,
                 s->opens ? s->opens - 1 : 0);
    return EW_OK;
}

static const ew_plugin s_plugin = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_SOURCE,
    .name = "serial",
    .version = "1.0.0",
    .description = "Reads csv, name=value or JSON lines from a serial device; reopens it when it returns.",
    .license = "MIT",
    .options = s_options,
    .config_size = sizeof(serial_config),
    .init = s_init,
    .start = s_start,
    .produce = s_produce,
    .poll_fd = s_poll_fd,
    .flush = s_flush,
    .destroy = s_destroy,
    .validate = s_validate,
};

EW_PLUGIN_EXPORT(s_plugin)
