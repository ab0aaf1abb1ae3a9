/* modbus: a source that polls a Modbus TCP or RTU device through libmodbus and
 * emits one sample per poll, one channel per entry of its register map.
 *
 *     [source.meter]
 *     plugin = modbus
 *     host = 192.168.1.50
 *     unit_id = 1
 *     poll = 1s
 *     register.voltage = holding 0 float32
 *     register.power   = input 10 int32 CDAB scale=0.1
 *
 * Adjacent registers are read in as few requests as the protocol allows. A
 * link fault (refused connection, timeout, reset) returns EW_EAGAIN so that
 * the host backs off and calls again; the next call reconnects. A Modbus
 * exception only blanks (NaN) the channels of the request that got it.
 */
#include <edgewatch/plugin.h>

#include "ewplug.h"
#include "modbus_map.h"

#include <errno.h>
#include <math.h>
#include <modbus.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_NS_PER_S 1000000000LL

typedef struct modbus_config {
    const char *host;
    int64_t port;
    const char *device;
    int64_t baud;
    int parity; /* 0 none, 1 even, 2 odd */
    int64_t data_bits;
    int64_t stop_bits;
    bool rs485;
    int64_t unit_id;
    int64_t poll;
    int64_t timeout;
    int64_t retries;
    int64_t address_base;
    int order;
    int64_t max_registers;
    int64_t max_bits;
    int64_t max_gap;
    ew_kvlist registers;
} modbus_config;

static const ew_option s_options[] = {
    EW_OPTION("host", EW_OPT_STRING, NULL, modbus_config, host,
              "Modbus TCP: the device's host name or IP address (set host or device, not both)."),
    EW_OPTION_RANGE("port", EW_OPT_INT, "502", 1, 65535, modbus_config, port,
                    "Modbus TCP: the device's TCP port."),
    EW_OPTION("device", EW_OPT_STRING, NULL, modbus_config, device,
              "Modbus RTU: the serial device, e.g. /dev/ttyUSB0 (set host or device, not both)."),
    EW_OPTION_RANGE("baud", EW_OPT_INT, "9600", 50, 4000000, modbus_config, baud,
                    "Modbus RTU: the line speed in bit/s."),
    EW_OPTION_ENUM("parity", "none", "none|even|odd", modbus_config, parity,
                   "Modbus RTU: the parity bit."),
    EW_OPTION_RANGE("data_bits", EW_OPT_INT, "8", 5, 8, modbus_config, data_bits,
                    "Modbus RTU: data bits per character."),
    EW_OPTION_RANGE("stop_bits", EW_OPT_INT, "1", 1, 2, modbus_config, stop_bits,
                    "Modbus RTU: stop bits per character."),
    EW_OPTION("rs485", EW_OPT_BOOL, "false", modbus_config, rs485,
              "Modbus RTU: switch the port to RS-485 mode (Linux TIOCSRS485; the port must support it)."),
    EW_OPTION_RANGE("unit_id", EW_OPT_INT, "1", 0, 255, modbus_config, unit_id,
                    "The unit (slave) id addressed; Modbus TCP gateways route by it."),
    EW_OPTION_RANGE("poll", EW_OPT_DURATION, "1s", 0.001, 86400, modbus_config, poll,
                    "Interval between two polls, on a fixed schedule; each poll emits one sample."),
    EW_OPTION_RANGE("timeout", EW_OPT_DURATION, "500ms", 0.001, 60, modbus_config, timeout,
                    "How long to wait for a connection or a response (sub-second values allowed)."),
    EW_OPTION_RANGE("retries", EW_OPT_INT, "1", 0, 10, modbus_config, retries,
                    "Requests repeated after a timeout or a corrupt reply before the link counts as lost."),
    EW_OPTION_RANGE("address_base", EW_OPT_INT, "0", 0, 1, modbus_config, address_base,
                    "0: map addresses are protocol addresses (0..65535); 1: they count from 1, as in "
                    "device manuals that say 40001 for holding register 1."),
    EW_OPTION_ENUM("order", "ABCD", MB_ORDER_CHOICES, modbus_config, order,
                   "Byte/word order of registers whose map entry names none."),
    EW_OPTION_RANGE("max_registers", EW_OPT_INT, "125", 1, 125, modbus_config, max_registers,
                    "Most registers read in one request (lower it for devices that refuse 125)."),
    EW_OPTION_RANGE("max_bits", EW_OPT_INT, "2000", 1, 2000, modbus_config, max_bits,
                    "Most coils or discrete inputs read in one request."),
    EW_OPTION_RANGE("max_gap", EW_OPT_INT, "0", 0, 100, modbus_config, max_gap,
                    "Unmapped registers or bits read (and ignored) to join two channels into one "
                    "request; 0 = only adjacent ones."),
    {.name = "register.", .type = EW_OPT_PREFIX, .offset = offsetof(modbus_config, registers),
     .description = "One channel: TABLE ADDRESS [TYPE] [ORDER] [scale=X] [offset=Y], e.g. "
                    "`register.temp = holding 100 float32 CDAB scale=0.1`."},
    EW_OPTION_END,
};

/* Read state of one request. */
typedef struct s_request {
    mb_group g;
    bool split;         /* read channel by channel after an illegal-address exception */
    uint64_t exceptions; /* exceptions seen, for the log rate limit */
} s_request;

typedef struct mbsrc {
    const ew_host *host;
    ew_node *node;
    const modbus_config *cfg;
    modbus_t *ctx;
    bool connected;
    bool ever_connected;
    char where[300];        /* "tcp 127.0.0.1:502 unit 1" for messages */
    size_t nch;
    mb_channel *ch;
    size_t *idx;            /* channels sorted by table and address */
    size_t nreq;
    s_request *req;
    double *values;         /* one sample, nch values */
    uint16_t regs[MODBUS_MAX_READ_REGISTERS];
    uint8_t bits[MODBUS_MAX_READ_BITS];
    /* Pacing: poll k is due at base + k * poll. */
    bool scheduled;
    int64_t next_due;
    /* One produce call ends by this monotonic instant, retries included. */
    int64_t deadline;
    unsigned timeouts_left;
    int64_t late_reply;     /* how late the last discarded reply of this call came, or 0 */
    uint64_t late_polls;
    ew_counter *c_requests, *c_exceptions, *c_timeouts, *c_reconnects, *c_late, *c_late_replies;
} mbsrc;

/* Text for a Modbus exception code (Modbus Application Protocol, section 7). */
static const char *s_exception_text(int code)
{
    switch (code) {
    case 1: return "illegal function";
    case 2: return "illegal data address";
    case 3: return "illegal data value";
    case 4: return "server device failure";
    case 5: return "acknowledge";
    case 6: return "server device busy";
    case 7: return "negative acknowledge";
    case 8: return "memory parity error";
    case 10: return "gateway path unavailable";
    case 11: return "gateway target device failed to respond";
    default: return "unknown exception";
    }
}

/* The exception code carried by a libmodbus errno, or 0 when it is not one. */
static int s_exception_code(int err)
{
    return err > MODBUS_ENOBASE && err <= EMBXGTAR ? err - MODBUS_ENOBASE : 0;
}

static int s_validate_transport(const modbus_config *cfg, char *err, size_t errlen)
{
    bool tcp = cfg->host && *cfg->host, rtu = cfg->device && *cfg->device;
    if (tcp == rtu) {
        snprintf(err, errlen,
                 tcp ? "both host (Modbus TCP) and device (Modbus RTU) are set; keep one"
                     : "no transport: set host (Modbus TCP) or device (Modbus RTU, a serial port)");
        return -1;
    }
    if (rtu && cfg->unit_id == 0) {
        snprintf(err, errlen,
                 "unit_id = 0 is the Modbus RTU broadcast address, to which no device answers a "
                 "read; set the device's own id (1..247)");
        return -1;
    }
    if (tcp && cfg->rs485) {
        snprintf(err, errlen, "rs485 = true applies to a serial device, not to Modbus TCP; remove it");
        return -1;
    }
    return 0;
}

static int s_validate(const void *config, char *err, size_t errlen, int *line)
{
    const modbus_config *cfg = config;
    *line = 0;
    if (s_validate_transport(cfg, err, errlen) < 0)
        return EW_ERR;
    size_t n = cfg->registers.count;
    mb_channel *ch = calloc(n ? n : 1, sizeof *ch);
    if (!ch) {
        snprintf(err, errlen, "out of memory checking the register map");
        return EW_ERR;
    }
    int rc = mb_map_parse(&cfg->registers, (int)cfg->address_base, (mb_order)cfg->order, ch, err,
                          errlen, line);
    free(ch);
    return rc < 0 ? EW_ERR : EW_OK;
}

static void s_disconnect(mbsrc *m)
{
    if (m->ctx && m->connected) {
        modbus_close(m->ctx);
        m->connected = false;
    }
}

static void s_destroy(void *self)
{
    mbsrc *m = self;
    if (!m)
        return;
    if (m->ctx) {
        s_disconnect(m);
        modbus_free(m->ctx);
    }
    free(m->ch);
    free(m->idx);
    free(m->req);
    free(m->values);
    free(m);
}

static int s_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    const modbus_config *cfg = config;
    char err[512];
    int line = 0;
    if (s_validate(cfg, err, sizeof err, &line) != EW_OK) {
        host->set_error(node, "%s", err);
        return EW_ERR;
    }
    mbsrc *m = calloc(1, sizeof *m);
    if (!m) {
        host->set_error(node, "out of memory allocating the modbus source");
        return EW_ERR;
    }
    m->host = host;
    m->node = node;
    m->cfg = cfg;
    m->nch = cfg->registers.count;
    m->ch = calloc(m->nch, sizeof *m->ch);
    m->idx = calloc(m->nch, sizeof *m->idx);
    m->values = calloc(m->nch, sizeof *m->values);
    mb_group *groups = calloc(m->nch, sizeof *groups);
    const char **names = calloc(m->nch, sizeof *names);
    int rc = EW_ERR;
    if (!m->ch || !m->idx || !m->values || !groups || !names) {
        host->set_error(node, "out of memory allocating %zu channels", m->nch);
        goto done;
    }
    if (mb_map_parse(&cfg->registers, (int)cfg->address_base, (mb_order)cfg->order, m->ch, err,
                     sizeof err, &line) < 0) {
        host->set_error(node, "line %d: %s", line, err);
        goto done;
    }
    mb_limits lim = {(unsigned)cfg->max_registers, (unsigned)cfg->max_bits, (unsigned)cfg->max_gap};
    m->nreq = mb_map_group(m->ch, m->nch, &lim, m->idx, groups);
    m->req = calloc(m->nreq, sizeof *m->req);
    if (!m->req) {
        host->set_error(node, "out of memory allocating %zu requests", m->nreq);
        goto done;
    }
    for (size_t i = 0; i < m->nreq; i++)
        m->req[i].g = groups[i];
    for (size_t i = 0; i < m->nch; i++)
        names[i] = m->ch[i].name;
    rc = host->set_channels(node, m->nch, names);
    if (rc != EW_OK)
        goto done;

    if (cfg->host && *cfg->host) {
        char port[16];
        snprintf(port, sizeof port, "%d", (int)cfg->port);
        m->ctx = modbus_new_tcp_pi(cfg->host, port);
        snprintf(m->where, sizeof m->where, "Modbus TCP %s:%s unit %d", cfg->host, port,
                 (int)cfg->unit_id);
    } else {
        static const char parity[] = {'N', 'E', 'O'};
        m->ctx = modbus_new_rtu(cfg->device, (int)cfg->baud, parity[cfg->parity], (int)cfg->data_bits,
                                (int)cfg->stop_bits);
        snprintf(m->where, sizeof m->where, "Modbus RTU %s %d %d%c%d unit %d", cfg->device,
                 (int)cfg->baud, (int)cfg->data_bits, parity[cfg->parity], (int)cfg->stop_bits,
                 (int)cfg->unit_id);
    }
    if (!m->ctx || modbus_set_slave(m->ctx, (int)cfg->unit_id) < 0) {
        host->set_error(node, "cannot set up %s: %s", m->where, modbus_strerror(errno));
        rc = EW_ERR;
        goto done;
    }
    m->c_requests = host->counter(node, "modbus_requests", "Modbus read requests sent");
    m->c_exceptions =
        host->counter(node, "modbus_exceptions", "Modbus exception responses (channels left NaN)");
    m->c_timeouts = host->counter(node, "modbus_timeouts", "Modbus requests that got no answer in time");
    m->c_reconnects = host->counter(node, "modbus_reconnects", "Modbus connections opened again after a loss");
    m->c_late = host->counter(node, "modbus_late_polls", "Polls skipped because a poll ran past its slot");
    m->c_late_replies = host->counter(node, "modbus_late_replies",
                                      "Replies that came after timeout and were discarded");
    host->log(node, EW_LOG_INFO, "%s: %zu channels in %zu read requests every %.3f s", m->where,
              m->nch, m->nreq, (double)cfg->poll / 1e9);
    rc = EW_OK;
done:
    free(groups);
    free(names);
    if (rc != EW_OK) {
        s_destroy(m);
        return rc;
    }
    *self = m;
    return EW_OK;
}

/* Sets the libmodbus response timeout to what is left of this call's budget,
 * at most `timeout`; false when the budget is spent. */
static bool s_arm_timeout(mbsrc *m)
{
    int64_t left = m->deadline - m->host->monotonic(m->node);
    if (left <= 0)
        return false;
    if (left > m->cfg->timeout)
        left = m->cfg->timeout;
    uint32_t sec = (uint32_t)(left / S_NS_PER_S);
    uint32_t usec = (uint32_t)((left % S_NS_PER_S) / 1000);
    if (sec == 0 && usec == 0)
        usec = 1;
    modbus_set_response_timeout(m->ctx, sec, usec);
    modbus_set_byte_timeout(m->ctx, sec, usec);
    return true;
}

static int s_connect(mbsrc *m)
{
    if (m->connected)
        return EW_OK;
    if (!s_arm_timeout(m)) {
        m->host->set_error(m->node, "%s: no time left to connect", m->where);
        return EW_EAGAIN;
    }
    if (modbus_connect(m->ctx) < 0) {
        int e = errno;
        m->host->set_error(m->node, "cannot connect to %s: %s (is the device on and reachable?)",
                           m->where, modbus_strerror(e));
        return EW_EAGAIN;
    }
    m->connected = true;
    if (m->cfg->device && *m->cfg->device && m->cfg->rs485 &&
        modbus_rtu_set_serial_mode(m->ctx, MODBUS_RTU_RS485) < 0) {
        int e = errno;
        s_disconnect(m);
        m->host->set_error(m->node,
                           "rs485 = true but %s refuses RS-485 mode (%s); use a port that supports "
                           "TIOCSRS485 or set rs485 = false",
                           m->cfg->device, modbus_strerror(e));
        return EW_ERR;
    }
    if (m->ever_connected) {
        m->host->counter_add(m->c_reconnects, 1);
        m->host->log(m->node, EW_LOG_INFO, "connected again to %s", m->where);
    } else {
        m->host->log(m->node, EW_LOG_INFO, "connected to %s", m->where);
    }
    m->ever_connected = true;
    return EW_OK;
}

/* The request's address range as the user wrote it, e.g. "holding 100..103". */
static void s_describe(const mbsrc *m, const mb_group *g, char *out, size_t len)
{
    long first = (long)g->start + m->cfg->address_base;
    if (g->count == 1)
        snprintf(out, len, "%s %ld", mb_table_name(g->table), first);
    else
        snprintf(out, len, "%s %ld..%ld", mb_table_name(g->table), first, first + g->count - 1);
}

/* Issues one read; returns the libmodbus result (count or -1 with errno). */
static int s_read(mbsrc *m, const mb_group *g)
{
    m->host->counter_add(m->c_requests, 1);
    switch (g->table) {
    case MB_COIL: return modbus_read_bits(m->ctx, g->start, g->count, m->bits);
    case MB_DISCRETE: return modbus_read_input_bits(m->ctx, g->start, g->count, m->bits);
    case MB_HOLDING: return modbus_read_registers(m->ctx, g->start, g->count, m->regs);
    case MB_INPUT: return modbus_read_input_registers(m->ctx, g->start, g->count, m->regs);
    default: errno = EINVAL; return -1;
    }
}

/* Writes the decoded, scaled values of a group's channels. */
static void s_decode_group(mbsrc *m, const mb_group *g)
{
    for (size_t k = g->first; k < g->first + g->n; k++) {
        const mb_channel *c = &m->ch[m->idx[k]];
        size_t at = (size_t)(c->address - g->start);
        double raw = mb_table_is_bits(g->table) ? (m->bits[at] ? 1.0 : 0.0)
                                                : mb_decode(&m->regs[at], c->type, c->order);
        m->values[m->idx[k]] = raw * c->scale + c->offset;
    }
}

static void s_blank_group(mbsrc *m, const mb_group *g)
{
    for (size_t k = g->first; k < g->first + g->n; k++)
        m->values[m->idx[k]] = NAN;
}

/* Waits up to wait_ns for the link to have bytes to read; false when it stays
 * quiet (or cannot be polled). */
static bool s_readable_within(int fd, int64_t wait_ns)
{
    if (wait_ns <= 0)
        return false;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int ms = (int)((wait_ns + 999999) / 1000000);
    int n;
    do {
        n = poll(&p, 1, ms);
    } while (n < 0 && errno == EINTR);
    return n > 0 && (p.revents & POLLIN);
}

/* After a timeout, waits (at most `timeout`, within this call's budget) for
 * the device's late reply and discards it whole, so that it can never be read
 * as the reply to the repeated request: Modbus RTU has no transaction id, and a
 * stale TCP reply would only be refused as invalid. Records how late it came. */
static void s_discard_late_reply(mbsrc *m, int64_t sent_at)
{
    const ew_host *host = m->host;
    int fd = modbus_get_socket(m->ctx);
    if (fd < 0)
        return;
    /* Quiet time that ends a frame: 40 characters on a serial line (at least 5 ms). */
    int64_t quiet = 5000000;
    if (m->cfg->device && *m->cfg->device) {
        int64_t chars = 40LL * 11 * S_NS_PER_S / m->cfg->baud;
        if (chars > quiet)
            quiet = chars;
    }
    int64_t now = host->monotonic(m->node);
    int64_t until = now + m->cfg->timeout;
    if (until > m->deadline)
        until = m->deadline;
    /* In slices, so that a stop is not held up by a long timeout. */
    bool arrived = false;
    while (!arrived && now < until && !host->stopping(m->node)) {
        int64_t slice = until - now < 100000000 ? until - now : 100000000;
        arrived = s_readable_within(fd, slice);
        now = host->monotonic(m->node);
    }
    if (!arrived)
        return;
    m->late_reply = now - sent_at;
    host->counter_add(m->c_late_replies, 1);
    /* Bounded: a peer that keeps sending (or a closed socket) ends at the deadline. */
    for (int i = 0; i < 64; i++) {
        modbus_flush(m->ctx);
        int64_t left = m->deadline - host->monotonic(m->node);
        if (!s_readable_within(fd, left < quiet ? left : quiet))
            break;
    }
}

/* The end of a failure message: why the device did not answer in time. */
static void s_timeout_hint(const mbsrc *m, char *out, size_t len)
{
    if (m->late_reply > 0)
        snprintf(out, len,
                 " (the device answered after %.3f s, later than timeout = %.3f s: raise timeout)",
                 (double)m->late_reply / 1e9, (double)m->cfg->timeout / 1e9);
    else
        snprintf(out, len, " (the device stopped answering: no reply within timeout = %.3f s)",
                 (double)m->cfg->timeout / 1e9);
}

/* Reads one group into m->values. Returns EW_OK (values or, after an
 * exception, NaN with its code in *exception), EW_EAGAIN when the link is
 * lost, or EW_ESTOP. */
static int s_read_group(mbsrc *m, s_request *r, const mb_group *g, int *exception)
{
    char what[64];
    *exception = 0;
    for (;;) {
        if (m->host->stopping(m->node))
            return EW_ESTOP;
        if (!s_arm_timeout(m)) {
            char hint[160];
            s_describe(m, g, what, sizeof what);
            s_timeout_hint(m, hint, sizeof hint);
            m->host->set_error(m->node, "%s: no answer reading %s in %d attempts%s", m->where,
                               what, (int)m->cfg->retries + 1, hint);
            s_disconnect(m);
            return EW_EAGAIN;
        }
        int64_t sent_at = m->host->monotonic(m->node);
        int n = s_read(m, g);
        if (n == g->count) {
            s_decode_group(m, g);
            return EW_OK;
        }
        int e = n < 0 ? errno : EMBBADDATA;
        int code = s_exception_code(e);
        s_describe(m, g, what, sizeof what);
        if (code) {
            /* The device answered: the link is fine, these channels are not. */
            m->host->counter_add(m->c_exceptions, 1);
            r->exceptions++;
            if (ewp_should_report(r->exceptions))
                m->host->log(m->node, EW_LOG_WARN,
                             "%s: exception %d (%s) reading %s register %ld (%s, %u %s); its "
                             "channels are NaN in this sample (%llu times so far)",
                             m->where, code, s_exception_text(code), mb_table_name(g->table),
                             (long)g->start + m->cfg->address_base, what, g->count,
                             mb_table_is_bits(g->table) ? "bits" : "registers",
                             (unsigned long long)r->exceptions);
            s_blank_group(m, g);
            *exception = code;
            return EW_OK;
        }
        bool timeout = e == ETIMEDOUT;
        /* EMBBADDATA: a reply that does not match the request (a stale TCP
         * transaction id, a wrong length). */
        bool garbled = e == EMBBADCRC || e == EMBBADSLAVE || e == EMBMDATA || e == EMBBADDATA;
        if (timeout)
            m->host->counter_add(m->c_timeouts, 1);
        if ((timeout || garbled) && m->timeouts_left > 0) {
            m->timeouts_left--;
            if (timeout)
                s_discard_late_reply(m, sent_at);
            else
                modbus_flush(m->ctx);
            continue;
        }
        char hint[160] = "";
        if (timeout)
            s_timeout_hint(m, hint, sizeof hint);
        m->host->set_error(m->node, "%s: reading %s failed: %s%s", m->where, what,
                           modbus_strerror(e), hint);
        s_disconnect(m);
        return EW_EAGAIN;
    }
}

/* One poll: every request, into m->values. */
static int s_poll(mbsrc *m)
{
    for (size_t i = 0; i < m->nreq; i++) {
        s_request *r = &m->req[i];
        int exception = 0;
        if (!r->split) {
            int rc = s_read_group(m, r, &r->g, &exception);
            if (rc != EW_OK)
                return rc;
            if (r->g.n == 1 || exception != MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS)
                continue;
            /* A shared request hit an address the device does not have: from now on
             * read its channels one by one, so that only that channel stays NaN. */
            r->split = true;
            m->host->log(m->node, EW_LOG_INFO,
                         "reading the %zu channels of that request one by one from now on, to "
                         "find which the device refuses",
                         r->g.n);
        }
        for (size_t k = r->g.first; k < r->g.first + r->g.n; k++) {
            const mb_channel *c = &m->ch[m->idx[k]];
            mb_group one = {c->table, c->address, (uint16_t)mb_type_width(c->type), k, 1};
            int rc = s_read_group(m, r, &one, &exception);
            if (rc != EW_OK)
                return rc;
        }
    }
    return EW_OK;
}

static int s_produce(void *self, int64_t *wake_at)
{
    mbsrc *m = self;
    const ew_host *host = m->host;
    const int64_t poll = m->cfg->poll;
    int64_t now = host->monotonic(m->node);
    if (!m->scheduled) {
        m->scheduled = true;
        m->next_due = now;
    }
    if (now < m->next_due) {
        *wake_at = m->next_due;
        return EW_OK;
    }
    if (host->stopping(m->node))
        return EW_ESTOP;

    /* Each attempt may take `timeout`, and each repeat after a timeout may
     * first wait up to `timeout` for the late reply it discards. */
    m->deadline = now + m->cfg->timeout * (2 * m->cfg->retries + 1);
    m->timeouts_left = (unsigned)m->cfg->retries;
    m->late_reply = 0;
    int rc = s_connect(m);
    int64_t ts = host->now(m->node);
    if (rc == EW_OK)
        rc = s_poll(m);
    if (rc == EW_EAGAIN) {
        /* The host backs off; the schedule restarts when the device is back. */
        m->scheduled = false;
        return rc;
    }
    if (rc != EW_OK)
        return rc;
    rc = host->emit(m->node, ts, m->values);
    if (rc != EW_OK)
        return rc;

    /* Absolute schedule: the next slot after this one, skipping slots that have
     * already passed (a slow device or a full downstream) rather than bursting. */
    m->next_due += poll;
    int64_t after = host->monotonic(m->node);
    if (m->next_due <= after) {
        int64_t missed = (after - m->next_due) / poll + 1;
        m->next_due += missed * poll;
        host->counter_add(m->c_late, (uint64_t)missed);
        m->late_polls += (uint64_t)missed;
        if (ewp_should_report(m->late_polls))
            host->log(m->node, EW_LOG_WARN,
                      "a poll took longer than poll = %.3f s: skipped %lld poll(s) (%llu so far); "
                      "raise poll, or lower timeout or the number of requests",
                      (double)poll / 1e9, (long long)missed, (unsigned long long)m->late_polls);
    }
    *wake_at = m->next_due;
    return EW_OK;
}

static const ew_plugin s_plugin = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_SOURCE,
    .name = "modbus",
    .version = "1.0.0",
    .description = "Polls a Modbus TCP or RTU device (libmodbus) and emits one channel per mapped register",
    .license = "MIT",
    .options = s_options,
    .config_size = sizeof(modbus_config),
    .init = s_init,
    .produce = s_produce,
    .destroy = s_destroy,
    .validate = s_validate,
};

EW_PLUGIN_EXPORT(s_plugin)
