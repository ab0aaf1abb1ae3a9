/* mqtt: a sink that publishes one JSON object per sample to an MQTT broker,
 * through a crash-safe spool on disk (store and forward).
 *
 *     [sink.uplink]
 *     plugin = mqtt
 *     input = pump_z
 *     broker = mqtts://broker.example:8883
 *     topic = plant/{node}/alerts
 *     qos = 1
 *     password_file = /run/secrets/mqtt
 *     only = anomalies
 *
 * consume appends every sample to the spool (spool.c) in the node's state
 * folder and fsyncs it before returning EW_OK: that is the acknowledgement to
 * upstream. A network thread of our own drives libmosquitto (its socket and an
 * eventfd in one poll), publishes from the spool in order with at most
 * `inflight` messages unacknowledged, and advances the spool's persisted cursor
 * when the broker acknowledges (PUBACK for QoS 1, PUBCOMP for QoS 2, the write
 * to the socket for QoS 0). On any connection loss the client is reset and
 * publishing resumes from the cursor: only the unacknowledged window is sent
 * again. Each payload starts with "seq": a per-node id, monotonic across
 * restarts, so subscribers can drop duplicates.
 *
 * Alert events (ABI 1.2; the section says only = events, e.g. with
 * topic = plant/{node}/events) take the same path: consume_event spools one
 * record, {"seq":N, then the event object of ewp_json_event}, published to the
 * topic template with {node} = the detector node that raised it, in spool
 * order with the samples, acknowledged the same way.
 */
#include <edgewatch/plugin.h>

#include "ewp_json.h"
#include "ewplug.h"
#include "spool.h"

#include <errno.h>
#include <inttypes.h>
#include <mosquitto.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

enum { S_FULL_BLOCK = 0, S_FULL_DROP_OLDEST = 1 };

#define S_BACKOFF_MIN_NS 200000000LL   /* first reconnect after 0.2 s */
#define S_BACKOFF_MAX_NS 10000000000LL /* then doubling up to 10 s */
#define S_DEGRADED_EVERY_NS 30000000000LL /* refresh of the spooled count in /health (each is logged) */

typedef struct mqtt_config {
    const char *broker;
    const char *client_id;
    const char *topic;
    int64_t qos;
    bool retain;
    int64_t keepalive;
    const char *username;
    const char *password_file;
    const char *password_env;
    const char *ca_file;
    const char *cert_file;
    const char *key_file;
    bool tls_verify;
    uint64_t spool_max;
    int spool_full;
    int64_t inflight;
    int64_t drain_timeout;
} mqtt_config;

static const ew_option s_options[] = {
    EW_OPTION_REQUIRED("broker", EW_OPT_STRING, mqtt_config, broker,
                       "Broker URL: mqtt://host[:port] (default port 1883) or mqtts://host[:port] (TLS, 8883)."),
    EW_OPTION("client_id", EW_OPT_STRING, "", mqtt_config, client_id,
              "MQTT client id; empty = edgewatch-<node>."),
    EW_OPTION("topic", EW_OPT_STRING, "edgewatch/{node}", mqtt_config, topic,
              "Topic template: {node} = the node that produced the sample or raised the event, "
              "{sink} = this node."),
    EW_OPTION_RANGE("qos", EW_OPT_INT, "1", 0, 2, mqtt_config, qos,
                    "MQTT quality of service 0, 1 or 2; acknowledged messages leave the spool."),
    EW_OPTION("retain", EW_OPT_BOOL, "false", mqtt_config, retain,
              "Publish with the retain flag (the broker keeps the last message per topic)."),
    EW_OPTION_RANGE("keepalive", EW_OPT_DURATION, "30s", 5, 65535, mqtt_config, keepalive,
                    "MQTT keepalive: how long a silent connection may last before it is declared dead."),
    EW_OPTION("username", EW_OPT_STRING, "", mqtt_config, username,
              "User name for the broker; empty = none."),
    EW_OPTION("password_file", EW_OPT_STRING, "", mqtt_config, password_file,
              "File whose first line is the password (never logged); empty = none."),
    EW_OPTION("password_env", EW_OPT_STRING, "", mqtt_config, password_env,
              "Environment variable holding the password (never logged); empty = none."),
    EW_OPTION("ca_file", EW_OPT_STRING, "", mqtt_config, ca_file,
              "mqtts: PEM file of the CA that signed the broker's certificate; empty = the system's CAs."),
    EW_OPTION("cert_file", EW_OPT_STRING, "", mqtt_config, cert_file,
              "mqtts: PEM client certificate, for brokers that require one (with key_file)."),
    EW_OPTION("key_file", EW_OPT_STRING, "", mqtt_config, key_file,
              "mqtts: PEM private key of cert_file."),
    EW_OPTION("tls_verify", EW_OPT_BOOL, "true", mqtt_config, tls_verify,
              "mqtts: check the broker's certificate and host name; turn off only for tests."),
    EW_OPTION_RANGE("spool_max", EW_OPT_SIZE, "64MiB", 1048576, 1099511627776.0, mqtt_config, spool_max,
                    "Disk space the spool of undelivered messages may use in the node's state folder."),
    EW_OPTION_ENUM("spool_full", "block", "block|drop_oldest", mqtt_config, spool_full,
                   "When the spool is full: make upstream wait, or drop the oldest messages (counted)."),
    EW_OPTION_RANGE("inflight", EW_OPT_INT, "256", 1, 65535, mqtt_config, inflight,
                    "Messages published but not yet acknowledged at most; these are resent after a crash."),
    EW_OPTION_RANGE("drain_timeout", EW_OPT_DURATION, "10s", 0, 86400, mqtt_config, drain_timeout,
                    "At shutdown, how long to keep sending the spool before leaving the rest for the next start."),
    EW_OPTION_END,
};

/* A published message waiting for its acknowledgement. */
typedef struct s_flight {
    int mid;
    uint64_t seq;
    bool acked;
} s_flight;

typedef struct mqtt {
    const ew_host *host;
    ew_node *node;
    const mqtt_config *cfg;
    char *host_name;
    int port;
    bool tls;
    char *client_id;
    char *password;
    char *spool_dir;
    spool *sp;
    ewp_json *json;
    /* consume's buffers */
    char *buf;
    size_t cap;
    spool_rec *recs;
    size_t nrecs_cap;
    char *topic;        /* the topic of the last origin seen */
    char *topic_origin;
    bool held;          /* the last batch or event is spooled but was refused: the host will retry it */
    bool held_event;    /* ... it was an event: its id, state and node identify it */
    size_t held_count;
    int64_t held_first, held_last;
    uint64_t held_id;
    ew_event_state held_state;
    char *held_node;
    /* the network thread */
    struct mosquitto *mosq;
    pthread_t thread;
    bool thread_started;
    int wake_fd;
    atomic_bool stop;
    atomic_bool connected;
    atomic_bool refused;      /* the broker refused us (credentials, TLS): a config problem */
    pthread_mutex_t mu;       /* guards refusal and lib_error */
    char refusal[512];
    char lib_error[256];      /* libmosquitto's last error log line (e.g. from OpenSSL) */
    bool connecting;
    bool outage_logged;
    int64_t next_attempt;
    int64_t backoff;
    s_flight *ring;
    size_t ring_head, ring_count, ring_cap;
    uint64_t acked_next;      /* first seq not acknowledged, as this thread knows it */
    uint64_t high_published;  /* highest seq ever published in this run, to count resends */
    bool ack_dirty;
    /* /health: `degraded` while the broker is unreachable (ABI 1.1 set_degraded) */
    bool down;                /* the last attempt failed or the connection was lost */
    bool degraded_shown;
    int64_t degraded_at;      /* when the reason was last updated */
    uint64_t degraded_n;      /* the count it showed */
    /* counters */
    ew_counter *c_spooled, *c_published, *c_dropped, *c_resent, *c_connects, *c_disconnects;
} mqtt;

/* ---- configuration ------------------------------------------------------------------- */

/* Splits mqtt[s]://host[:port]; host may be [v6]. */
static int s_parse_url(const char *url, char **host, int *port, bool *tls, char *err, size_t errlen)
{
    const char *rest;
    if (strncmp(url, "mqtt://", 7) == 0) {
        *tls = false;
        *port = 1883;
        rest = url + 7;
    } else if (strncmp(url, "mqtts://", 8) == 0) {
        *tls = true;
        *port = 8883;
        rest = url + 8;
    } else {
        snprintf(err, errlen, "broker = %s: the URL must start with mqtt:// or mqtts://", url);
        return -1;
    }
    const char *hs = rest, *he, *colon;
    if (*rest == '[') {
        hs = rest + 1;
        he = strchr(hs, ']');
        if (!he) {
            snprintf(err, errlen, "broker = %s: missing ] after the IPv6 address", url);
            return -1;
        }
        colon = he[1] == ':' ? he + 1 : NULL;
        if (he[1] && !colon) {
            snprintf(err, errlen, "broker = %s: unexpected text after the address", url);
            return -1;
        }
    } else {
        colon = strchr(rest, ':');
        he = colon ? colon : rest + strlen(rest);
    }
    if (he == hs || memchr(hs, '/', (size_t)(he - hs))) {
        snprintf(err, errlen, "broker = %s: expected mqtt://host:port (no path)", url);
        return -1;
    }
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (*end || p < 1 || p > 65535 || end == colon + 1) {
            snprintf(err, errlen, "broker = %s: the port must be a number from 1 to 65535", url);
            return -1;
        }
        *port = (int)p;
    }
    if (host && !(*host = strndup(hs, (size_t)(he - hs)))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Checks that a topic template uses only known {placeholders} and no wildcards. */
static int s_check_topic(const char *t, char *err, size_t errlen)
{
    if (!*t || strpbrk(t, "+#")) {
        snprintf(err, errlen, "topic = %s: a topic to publish to must be non-empty and without + or #", t);
        return -1;
    }
    for (const char *p = strchr(t, '{'); p; p = strchr(p + 1, '{')) {
        if (strncmp(p, "{node}", 6) != 0 && strncmp(p, "{sink}", 6) != 0) {
            snprintf(err, errlen, "topic = %s: unknown placeholder at \"%.20s\"; use {node} or {sink}", t, p);
            return -1;
        }
    }
    return 0;
}

static int s_validate(const void *config, char *err, size_t errlen, int *line)
{
    const mqtt_config *c = config;
    bool tls;
    int port;
    *line = 0;
    if (s_parse_url(c->broker, NULL, &port, &tls, err, errlen) < 0)
        return EW_ERR;
    if (s_check_topic(c->topic, err, errlen) < 0)
        return EW_ERR;
    if (*c->password_file && *c->password_env) {
        snprintf(err, errlen, "set password_file or password_env, not both");
        return EW_ERR;
    }
    if (!*c->username && (*c->password_file || *c->password_env)) {
        snprintf(err, errlen, "a password needs a username: set username too");
        return EW_ERR;
    }
    if (!!*c->cert_file != !!*c->key_file) {
        snprintf(err, errlen, "cert_file and key_file go together: set both or neither");
        return EW_ERR;
    }
    if (!tls && (*c->ca_file || *c->cert_file)) {
        snprintf(err, errlen, "ca_file, cert_file and key_file need a TLS broker: write broker = mqtts://...");
        return EW_ERR;
    }
    return EW_OK;
}

/* Reads the password: the first line of password_file, or password_env. */
static int s_password(mqtt *m)
{
    const mqtt_config *c = m->cfg;
    if (*c->password_env) {
        const char *v = getenv(c->password_env);
        if (!v) {
            m->host->set_error(m->node, "password_env = %s: that environment variable is not set",
                               c->password_env);
            return EW_EINVAL;
        }
        m->password = strdup(v);
    } else if (*c->password_file) {
        FILE *f = fopen(c->password_file, "re");
        if (!f) {
            m->host->set_error(m->node, "cannot read password_file %s: %s", c->password_file, strerror(errno));
            return EW_EINVAL;
        }
        char line[4096];
        if (!fgets(line, sizeof line, f))
            line[0] = '\0';
        fclose(f);
        line[strcspn(line, "\r\n")] = '\0';
        m->password = strdup(line);
        memset(line, 0, sizeof line);
    } else {
        return EW_OK;
    }
    if (!m->password) {
        m->host->set_error(m->node, "out of memory");
        return EW_ERR;
    }
    return EW_OK;
}

/* ---- the network thread ---------------------------------------------------------------- */

static void s_refuse(mqtt *m, const char *fmt, ...) EW_PRINTF(2, 3);
static void s_refuse(mqtt *m, const char *fmt, ...)
{
    pthread_mutex_lock(&m->mu);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->refusal, sizeof m->refusal, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&m->mu);
    atomic_store(&m->refused, true);
}

static void s_on_log(struct mosquitto *mosq, void *obj, int level, const char *str)
{
    mqtt *m = obj;
    if (level == MOSQ_LOG_ERR) {
        pthread_mutex_lock(&m->mu);
        snprintf(m->lib_error, sizeof m->lib_error, "%s", str);
        pthread_mutex_unlock(&m->mu);
    }
}

static void s_on_connect(struct mosquitto *mosq, void *obj, int rc)
{
    mqtt *m = obj;
    m->connecting = false;
    if (rc != 0) {
        /* MQTT 5 reason codes 134 and 135, 3.1.1 return codes 4 and 5. */
        const char *why = rc == 134 || rc == 4   ? "not authorised (bad username or password)"
                          : rc == 135 || rc == 5 ? "not authorised"
                                                 : mosquitto_reason_string(rc);
        /* CONNACK refusals (bad credentials, not authorised, bad client id) do not
         * pass by themselves: report them loudly and keep trying slowly. */
        m->host->log(m->node, EW_LOG_ERROR,
                     "broker %s refused the connection: %s; check username and password_file/password_env "
                     "(messages stay in the spool)",
                     m->cfg->broker, why);
        s_refuse(m, "broker %s refused the connection: %s", m->cfg->broker, why);
        return;
    }
    atomic_store(&m->connected, true);
    atomic_store(&m->refused, false);
    m->down = false;
    m->backoff = 0;
    m->outage_logged = false;
    m->host->counter_add(m->c_connects, 1);
    m->host->log(m->node, EW_LOG_INFO, "connected to broker %s; %" PRIu64 " messages in the spool to send",
                 m->cfg->broker, spool_pending(m->sp));
}

static void s_on_publish(struct mosquitto *mosq, void *obj, int mid)
{
    mqtt *m = obj;
    for (size_t i = 0; i < m->ring_count; i++) {
        s_flight *f = &m->ring[(m->ring_head + i) % m->ring_cap];
        if (f->mid == mid && !f->acked) {
            f->acked = true;
            break;
        }
    }
    /* The cursor moves over the acknowledged prefix only, keeping the spool in order. */
    uint64_t n = 0;
    while (m->ring_count && m->ring[m->ring_head].acked) {
        uint64_t next = m->ring[m->ring_head].seq + 1;
        if (next > m->acked_next)
            m->acked_next = next;
        m->ring_head = (m->ring_head + 1) % m->ring_cap;
        m->ring_count--;
        n++;
        m->ack_dirty = true;
    }
    m->host->counter_add(m->c_published, n);
}

/* Applies every client setting to a fresh (or reinitialised) client. */
static int s_client_setup(mqtt *m)
{
    const mqtt_config *c = m->cfg;
    mosquitto_log_callback_set(m->mosq, s_on_log);
    mosquitto_connect_callback_set(m->mosq, s_on_connect);
    mosquitto_publish_callback_set(m->mosq, s_on_publish);
    mosquitto_max_inflight_messages_set(m->mosq, (unsigned)c->inflight);
    mosquitto_int_option(m->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    /* MQTT 5: the broker's receive maximum reaches libmosquitto, which then never
     * has more QoS 1/2 messages in flight than the broker accepts (mosquitto
     * disconnects a 3.1.1 client that exceeds its max_inflight_messages). */
    mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    if (*c->username && mosquitto_username_pw_set(m->mosq, c->username, m->password) != MOSQ_ERR_SUCCESS)
        return -1;
    if (m->tls) {
        if (!*c->ca_file)
            mosquitto_int_option(m->mosq, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
        int rc = mosquitto_tls_set(m->mosq, *c->ca_file ? c->ca_file : NULL, NULL,
                                   *c->cert_file ? c->cert_file : NULL, *c->key_file ? c->key_file : NULL, NULL);
        if (rc != MOSQ_ERR_SUCCESS && *c->ca_file) {
            m->host->set_error(m->node, "TLS setup failed (ca_file %s, cert_file %s): %s", c->ca_file,
                               *c->cert_file ? c->cert_file : "none", mosquitto_strerror(rc));
            return -1;
        }
        if (!c->tls_verify) {
            mosquitto_tls_opts_set(m->mosq, 0 /* SSL_VERIFY_NONE */, NULL, NULL);
            mosquitto_tls_insecure_set(m->mosq, true);
        }
    }
    return 0;
}

static void s_conn_lost(mqtt *m, int rc, int64_t now)
{
    bool was = atomic_exchange(&m->connected, false);
    m->connecting = false;
    m->down = true;
    char lib[256];
    pthread_mutex_lock(&m->mu);
    snprintf(lib, sizeof lib, "%s", m->lib_error);
    m->lib_error[0] = '\0';
    pthread_mutex_unlock(&m->mu);
    const char *why = rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc);
    if (rc == MOSQ_ERR_TLS) {
        m->host->log(m->node, EW_LOG_ERROR,
                     "TLS with broker %s failed: %s; check ca_file, cert_file/key_file and tls_verify "
                     "(messages stay in the spool)",
                     m->cfg->broker, lib[0] ? lib : why);
        s_refuse(m, "TLS with broker %s failed: %s", m->cfg->broker, lib[0] ? lib : why);
    } else if (was) {
        m->host->counter_add(m->c_disconnects, 1);
        m->host->log(m->node, EW_LOG_WARN, "lost the connection to broker %s: %s; spooling until it is back",
                     m->cfg->broker, why);
        m->outage_logged = true;
    } else if (!m->outage_logged && !atomic_load(&m->refused)) {
        m->host->log(m->node, EW_LOG_WARN, "cannot reach broker %s: %s; spooling until it is reachable",
                     m->cfg->broker, why);
        m->outage_logged = true;
    }
    /* A fresh client forgets what libmosquitto had queued: we resend the
     * unacknowledged window from the spool ourselves, in order. */
    mosquitto_reinitialise(m->mosq, m->client_id, true, m);
    s_client_setup(m);
    m->ring_head = m->ring_count = 0;
    spool_rewind(m->sp);
    m->backoff = m->backoff ? m->backoff * 2 : S_BACKOFF_MIN_NS;
    if (m->backoff > S_BACKOFF_MAX_NS)
        m->backoff = S_BACKOFF_MAX_NS;
    m->next_attempt = now + m->backoff;
}

/* Publishes from the spool while the window has room. */
static int s_feed(mqtt *m)
{
    char err[512];
    while (m->ring_count < m->ring_cap) {
        uint64_t seq;
        const void *data;
        size_t len;
        int rc = spool_read(m->sp, &seq, &data, &len, err, sizeof err);
        if (rc == 0)
            return MOSQ_ERR_SUCCESS;
        if (rc < 0) {
            m->host->log(m->node, EW_LOG_ERROR, "%s", err);
            return MOSQ_ERR_UNKNOWN;
        }
        const unsigned char *p = data;
        size_t tlen = (size_t)p[0] | (size_t)p[1] << 8;
        char topic[1024];
        if (tlen + 2 > len || tlen >= sizeof topic)
            continue; /* cannot happen for records we wrote; skip rather than stall */
        memcpy(topic, p + 2, tlen);
        topic[tlen] = '\0';
        int mid = 0;
        rc = mosquitto_publish(m->mosq, &mid, topic, (int)(len - 2 - tlen), p + 2 + tlen, (int)m->cfg->qos,
                               m->cfg->retain);
        if (rc != MOSQ_ERR_SUCCESS) {
            spool_rewind(m->sp);
            return rc;
        }
        if (seq <= m->high_published)
            m->host->counter_add(m->c_resent, 1);
        else
            m->high_published = seq;
        /* QoS 0 may call on_publish from inside mosquitto_publish: add first. */
        s_flight *f = &m->ring[(m->ring_head + m->ring_count) % m->ring_cap];
        f->mid = mid;
        f->seq = seq;
        f->acked = false;
        m->ring_count++;
    }
    return MOSQ_ERR_SUCCESS;
}

/* Shows the outage in /health as `degraded` with the spooled count, and clears
 * it once connected. The count is refreshed every few seconds only: the host
 * logs each change of the reason. A refusal (credentials, TLS) is reported as
 * `retrying` by consume instead. */
static void s_show_degraded(mqtt *m, int64_t now)
{
    if (!EW_HOST_HAS(m->host, set_degraded))
        return;
    if (m->down && !atomic_load(&m->connected) && !atomic_load(&m->refused)) {
        uint64_t n = spool_pending(m->sp);
        if (!m->degraded_shown || (n != m->degraded_n && now - m->degraded_at >= S_DEGRADED_EVERY_NS)) {
            char reason[128];
            snprintf(reason, sizeof reason, "broker unreachable, %" PRIu64 " messages spooled", n);
            m->host->set_degraded(m->node, reason);
            m->degraded_shown = true;
            m->degraded_at = now;
            m->degraded_n = n;
        }
    } else if (m->degraded_shown) {
        m->host->set_degraded(m->node, NULL);
        m->degraded_shown = false;
    }
}

static void *s_thread(void *arg)
{
    mqtt *m = arg;
    m->acked_next = spool_acked(m->sp);
    while (!atomic_load(&m->stop)) {
        int64_t now = m->host->monotonic(m->node);
        if (!atomic_load(&m->connected) && !m->connecting && now >= m->next_attempt) {
            int rc = mosquitto_connect(m->mosq, m->host_name, m->port, (int)(m->cfg->keepalive / 1000000000LL));
            if (rc == MOSQ_ERR_SUCCESS)
                m->connecting = true;
            else
                s_conn_lost(m, rc, now);
        }
        int sock = mosquitto_socket(m->mosq);
        struct pollfd p[2] = {{m->wake_fd, POLLIN, 0}, {sock, 0, 0}};
        nfds_t np = 1;
        if (sock >= 0 && (m->connecting || atomic_load(&m->connected))) {
            p[1].events = POLLIN | (mosquitto_want_write(m->mosq) ? POLLOUT : 0);
            np = 2;
        }
        int timeout = 100;
        if (!atomic_load(&m->connected) && !m->connecting) {
            int64_t wait = (m->next_attempt - now) / 1000000;
            timeout = wait < 0 ? 0 : wait > 100 ? 100 : (int)wait;
        }
        if (poll(p, np, timeout) < 0 && errno != EINTR)
            break;
        if (p[0].revents & POLLIN) {
            uint64_t v;
            if (read(m->wake_fd, &v, sizeof v) < 0) {
            }
        }
        now = m->host->monotonic(m->node);
        if (np == 2) {
            int rc = MOSQ_ERR_SUCCESS;
            if (p[1].revents & (POLLIN | POLLERR | POLLHUP))
                rc = mosquitto_loop_read(m->mosq, 1);
            if (rc == MOSQ_ERR_SUCCESS && (p[1].revents & POLLOUT))
                rc = mosquitto_loop_write(m->mosq, 1);
            if (rc == MOSQ_ERR_SUCCESS)
                rc = mosquitto_loop_misc(m->mosq);
            if (rc == MOSQ_ERR_SUCCESS && atomic_load(&m->refused) && !atomic_load(&m->connected))
                rc = MOSQ_ERR_CONN_REFUSED;
            if (rc == MOSQ_ERR_SUCCESS && atomic_load(&m->connected)) {
                rc = s_feed(m);
                if (rc == MOSQ_ERR_SUCCESS && mosquitto_want_write(m->mosq))
                    rc = mosquitto_loop_write(m->mosq, 1);
            }
            if (rc != MOSQ_ERR_SUCCESS)
                s_conn_lost(m, rc, now);
        }
        if (m->ack_dirty) {
            spool_ack(m->sp, m->acked_next, false);
            m->ack_dirty = false;
        }
        s_show_degraded(m, now);
    }
    spool_ack(m->sp, m->acked_next, true);
    if (atomic_load(&m->connected))
        mosquitto_disconnect(m->mosq);
    return NULL;
}

static void s_wake(mqtt *m)
{
    uint64_t one = 1;
    if (write(m->wake_fd, &one, sizeof one) < 0) {
        /* the counter is already non-zero: the thread wakes anyway */
    }
}

static void s_stop_thread(mqtt *m)
{
    if (!m->thread_started)
        return;
    atomic_store(&m->stop, true);
    s_wake(m);
    pthread_join(m->thread, NULL);
    m->thread_started = false;
}

/* ---- lifecycle ------------------------------------------------------------------------- */

static void s_destroy(void *self)
{
    mqtt *m = self;
    if (!m)
        return;
    s_stop_thread(m);
    if (m->mosq)
        mosquitto_destroy(m->mosq);
    spool_close(&m->sp);
    ewp_json_free(&m->json);
    if (m->password) {
        memset(m->password, 0, strlen(m->password));
        free(m->password);
    }
    if (m->wake_fd >= 0)
        close(m->wake_fd);
    pthread_mutex_destroy(&m->mu);
    free(m->host_name);
    free(m->client_id);
    free(m->spool_dir);
    free(m->buf);
    free(m->recs);
    free(m->topic);
    free(m->topic_origin);
    free(m->held_node);
    free(m->ring);
    free(m);
}

static int s_init(const ew_host *host, ew_node *node, const void *config, void **self)
{
    const mqtt_config *cfg = config;
    char err[1024];
    int line;
    if (s_validate(cfg, err, sizeof err, &line) != EW_OK) {
        host->set_error(node, "%s", err);
        return EW_EINVAL;
    }
    mqtt *m = calloc(1, sizeof *m);
    if (!m) {
        host->set_error(node, "out of memory allocating the mqtt sink");
        return EW_ERR;
    }
    m->host = host;
    m->node = node;
    m->cfg = cfg;
    m->wake_fd = -1;
    pthread_mutex_init(&m->mu, NULL);
    *self = m; /* destroy cleans up from here on */
    if (s_parse_url(cfg->broker, &m->host_name, &m->port, &m->tls, err, sizeof err) < 0) {
        host->set_error(node, "%s", err);
        return EW_EINVAL;
    }
    int rc = s_password(m);
    if (rc != EW_OK)
        return rc;
    if (*cfg->client_id)
        m->client_id = strdup(cfg->client_id);
    else if (asprintf(&m->client_id, "edgewatch-%s", host->node_name(node)) < 0)
        m->client_id = NULL;
    m->json = ewp_json_new();
    m->ring_cap = (size_t)cfg->inflight;
    m->ring = calloc(m->ring_cap, sizeof *m->ring);
    m->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!m->client_id || !m->json || !m->ring || m->wake_fd < 0) {
        host->set_error(node, "out of memory (or no eventfd) setting up the mqtt sink");
        return EW_ERR;
    }
    if (!EW_HOST_HAS(host, state_path)) {
        host->set_error(node, "this edgewatch is too old for the mqtt sink's spool (needs ABI 1.1)");
        return EW_ERR;
    }
    const char *state = host->state_path(node);
    if (!state)
        return EW_ERR; /* the host set the reason */
    if (asprintf(&m->spool_dir, "%s/spool", state) < 0) {
        m->spool_dir = NULL;
        host->set_error(node, "out of memory");
        return EW_ERR;
    }
    spool_recovery rec;
    if (spool_open(&m->sp, m->spool_dir, cfg->spool_max, &rec, err, sizeof err) != SPOOL_OK) {
        host->set_error(node, "%s", err);
        return EW_ERR;
    }
    if (rec.truncated_bytes)
        host->log(node, EW_LOG_WARN,
                  "spool %s: cut %" PRIu64 " bytes of a record torn by a crash (never acknowledged upstream)",
                  m->spool_dir, rec.truncated_bytes);
    if (rec.corrupt_stretches)
        host->log(node, EW_LOG_ERROR,
                  "spool %s: corruption on disk (not a crash): %" PRIu64 " damaged stretch(es), %" PRIu64
                  " bytes, at %s; cut out, %" PRIu64 " intact records after them kept, at most %" PRIu64
                  " messages lost (their ids are never reused); check the disk",
                  m->spool_dir, rec.corrupt_stretches, rec.corrupt_bytes, rec.corrupt_where,
                  rec.recovered_records, rec.lost_records);
    if (rec.cursor_lost)
        host->log(node, EW_LOG_WARN, "spool %s: no valid cursor; resending every spooled message", m->spool_dir);
    if (rec.records)
        host->log(node, EW_LOG_INFO, "spool %s holds %" PRIu64 " messages from an earlier run; sending them first",
                  m->spool_dir, rec.records);
    m->c_spooled = host->counter(node, "mqtt_spooled", "Messages accepted into the mqtt sink's spool");
    ew_counter *corrupt = host->counter(node, "mqtt_spool_corruptions",
                                        "Damaged stretches found in the spool's files at start (corruption on disk)");
    host->counter_add(corrupt, rec.corrupt_stretches);
    m->c_published = host->counter(node, "mqtt_published", "Messages the broker acknowledged (QoS 0: written)");
    m->c_dropped = host->counter(node, "mqtt_dropped", "Messages dropped from a full spool (spool_full = drop_oldest)");
    m->c_resent = host->counter(node, "mqtt_resent", "Messages published again after a connection loss");
    m->c_connects = host->counter(node, "mqtt_connects", "Successful connections to the broker");
    m->c_disconnects = host->counter(node, "mqtt_disconnects", "Connections to the broker lost");
    mosquitto_lib_init();
    m->mosq = mosquitto_new(m->client_id, true, m);
    if (!m->mosq || s_client_setup(m) < 0) {
        if (!m->mosq)
            host->set_error(node, "cannot create the MQTT client: %s", strerror(errno));
        else if (*cfg->username)
            host->set_error(node, "cannot set the MQTT credentials");
        return EW_EINVAL;
    }
    return EW_OK;
}

static int s_start(void *self)
{
    mqtt *m = self;
    if (pthread_create(&m->thread, NULL, s_thread, m) != 0) {
        m->host->set_error(m->node, "cannot start the mqtt network thread");
        return EW_ERR;
    }
    m->thread_started = true;
    return EW_OK;
}

/* The topic for this origin, from the template. */
static const char *s_topic(mqtt *m, const char *origin)
{
    if (m->topic && strcmp(m->topic_origin, origin) == 0)
        return m->topic;
    free(m->topic);
    free(m->topic_origin);
    m->topic = NULL;
    m->topic_origin = strdup(origin);
    const char *sink = m->host->node_name(m->node);
    size_t n = strlen(m->cfg->topic) + 1;
    for (const char *p = strchr(m->cfg->topic, '{'); p; p = strchr(p + 1, '{'))
        n += strlen(origin) + strlen(sink);
    char *t = malloc(n);
    if (!t || !m->topic_origin) {
        free(t);
        return NULL;
    }
    size_t len = 0;
    for (const char *p = m->cfg->topic; *p;) {
        if (strncmp(p, "{node}", 6) == 0) {
            memcpy(t + len, origin, strlen(origin));
            len += strlen(origin);
            p += 6;
        } else if (strncmp(p, "{sink}", 6) == 0) {
            memcpy(t + len, sink, strlen(sink));
            len += strlen(sink);
            p += 6;
        } else {
            t[len++] = *p++;
        }
    }
    t[len] = '\0';
    m->topic = t;
    return t;
}

/* While the broker refuses us (credentials, TLS) the batch is spooled but
 * reported as transient: the node shows `retrying` with the reason in /health
 * and upstream is held back, one batch at a time, until the broker accepts us.
 * When the host is stopping, the spooled batch counts as delivered. */
static int s_refused(mqtt *m, bool again)
{
    if (!atomic_load(&m->refused) || m->host->stopping(m->node))
        return EW_OK;
    pthread_mutex_lock(&m->mu);
    m->host->set_error(m->node, "%s; waiting with %" PRIu64 " messages spooled", m->refusal,
                       spool_pending(m->sp));
    pthread_mutex_unlock(&m->mu);
    return EW_EAGAIN;
}

/* Room in consume's buffers for `bytes` of records and `recs` of them. */
static bool s_reserve(mqtt *m, size_t bytes, size_t recs)
{
    if (bytes > m->cap) {
        char *b = realloc(m->buf, bytes);
        if (!b)
            return false;
        m->buf = b;
        m->cap = bytes;
    }
    if (recs > m->nrecs_cap) {
        spool_rec *r = realloc(m->recs, recs * sizeof *r);
        if (!r)
            return false;
        m->recs = r;
        m->nrecs_cap = recs;
    }
    return true;
}

/* Appends the n records rendered in m->recs to the spool, durably: EW_OK (they are
 * accepted), EW_EAGAIN when the spool is full (block) or the disk fails for now,
 * EW_ERR otherwise; the error says why. */
static int s_append(mqtt *m, size_t n)
{
    uint64_t dropped = 0;
    char err[512];
    int rc = spool_append(m->sp, m->recs, n, m->cfg->spool_full == S_FULL_DROP_OLDEST, &dropped, err,
                          sizeof err);
    if (dropped) {
        m->host->counter_add(m->c_dropped, dropped);
        m->host->log(m->node, EW_LOG_WARN,
                     "spool full (spool_max = %" PRIu64 " bytes): dropped the %" PRIu64
                     " oldest undelivered messages (broker %s %s)",
                     m->cfg->spool_max, dropped, m->cfg->broker,
                     atomic_load(&m->connected) ? "too slow" : "unreachable");
    }
    if (rc == SPOOL_FULL) {
        m->host->set_error(m->node, "spool full (%" PRIu64 " messages, spool_max = %" PRIu64
                                    " bytes) while broker %s is %s; upstream waits (spool_full = block)",
                           spool_pending(m->sp), m->cfg->spool_max, m->cfg->broker,
                           atomic_load(&m->connected) ? "slow" : "unreachable");
        return EW_EAGAIN;
    }
    if (rc != SPOOL_OK) {
        m->host->set_error(m->node, "%s", err);
        return rc == SPOOL_AGAIN ? EW_EAGAIN : EW_ERR;
    }
    m->host->counter_add(m->c_spooled, n);
    s_wake(m);
    return EW_OK;
}

static int s_consume(void *self, const ew_batch *in)
{
    mqtt *m = self;
    /* The host's retry of the batch held back by a refusal: it is already spooled. */
    bool retry = m->held && !m->held_event && in->count == m->held_count &&
                 (in->count == 0 || (in->ts[0] == m->held_first && in->ts[in->count - 1] == m->held_last));
    m->held = false;
    if (retry) {
        m->held = true;
        return s_refused(m, true);
    }
    if (in->count == 0)
        return EW_OK;
    const ewp_json_stream *st = ewp_json_stream_for(m->json, in);
    const char *topic = s_topic(m, in->origin ? in->origin : "");
    if (!st || !topic) {
        m->host->set_error(m->node, "out of memory preparing the messages of stream %s",
                           in->origin ? in->origin : "?");
        return EW_ERR;
    }
    size_t tlen = strlen(topic);
    if (tlen > 1000) {
        m->host->set_error(m->node, "topic %s is too long (%zu bytes, at most 1000)", topic, tlen);
        return EW_ERR;
    }
    size_t one = 2 + tlen + ewp_json_bound(st) + 32;
    if (!s_reserve(m, one * in->count, in->count)) {
        m->host->set_error(m->node, "out of memory rendering %zu messages", in->count);
        return EW_ERR;
    }
    /* Every sample becomes one record: [topic length, 2 bytes LE][topic][JSON]. */
    uint64_t seq = spool_next_seq(m->sp);
    size_t len = 0;
    for (size_t i = 0; i < in->count; i++) {
        char prefix[40];
        snprintf(prefix, sizeof prefix, "\"seq\":%" PRIu64 ",", seq + i);
        char *r = m->buf + len;
        r[0] = (char)(tlen & 0xff);
        r[1] = (char)(tlen >> 8);
        memcpy(r + 2, topic, tlen);
        size_t n = 2 + tlen + ewp_json_render(st, in, i, prefix, r + 2 + tlen);
        m->recs[i] = (spool_rec){r, n};
        len += n;
    }
    int rc = s_append(m, in->count);
    if (rc != EW_OK)
        return rc;
    if (atomic_load(&m->refused)) {
        m->held = true;
        m->held_event = false;
        m->held_count = in->count;
        m->held_first = in->ts[0];
        m->held_last = in->ts[in->count - 1];
        return s_refused(m, false);
    }
    return EW_OK;
}

static bool s_same_event(const mqtt *m, const ew_event *ev)
{
    return m->held && m->held_event && ev && ev->id == m->held_id && ev->state == m->held_state &&
           ev->node && m->held_node && strcmp(ev->node, m->held_node) == 0;
}

static int s_consume_event(void *self, const ew_event *ev)
{
    mqtt *m = self;
    /* As for a batch: the host's retry of an event held back by a refusal is spooled already. */
    bool retry = s_same_event(m, ev);
    m->held = false;
    if (retry) {
        m->held = true;
        return s_refused(m, true);
    }
    char err[512], prefix[40];
    snprintf(prefix, sizeof prefix, "\"seq\":%" PRIu64 ",", spool_next_seq(m->sp));
    size_t jlen = 0;
    char *json = ewp_json_event(ev, prefix, &jlen, err, sizeof err);
    if (!json) {
        m->host->set_error(m->node, "cannot publish the event: %s", err);
        return EW_ERR;
    }
    const char *topic = s_topic(m, ev->node);
    size_t tlen = topic ? strlen(topic) : 0;
    if (!topic || !s_reserve(m, 2 + tlen + jlen, 1)) {
        free(json);
        m->host->set_error(m->node, "out of memory preparing event %" PRIu64 " of node %s", ev->id, ev->node);
        return EW_ERR;
    }
    if (tlen > 1000) {
        free(json);
        m->host->set_error(m->node, "topic %s is too long (%zu bytes, at most 1000)", topic, tlen);
        return EW_ERR;
    }
    /* One record, as for a sample: [topic length, 2 bytes LE][topic][JSON]. */
    m->buf[0] = (char)(tlen & 0xff);
    m->buf[1] = (char)(tlen >> 8);
    memcpy(m->buf + 2, topic, tlen);
    memcpy(m->buf + 2 + tlen, json, jlen);
    free(json);
    m->recs[0] = (spool_rec){m->buf, 2 + tlen + jlen};
    int rc = s_append(m, 1);
    if (rc != EW_OK || !atomic_load(&m->refused))
        return rc;
    free(m->held_node);
    m->held_node = strdup(ev->node); /* NULL (out of memory): the retry is spooled again, seq tells */
    m->held = m->held_node != NULL;
    m->held_event = true;
    m->held_id = ev->id;
    m->held_state = ev->state;
    return s_refused(m, false);
}

static int s_flush(void *self)
{
    mqtt *m = self;
    /* Keep sending for up to drain_timeout while the broker is reachable; what is
     * left stays in the spool for the next start. */
    int64_t deadline = m->host->monotonic(m->node) + m->cfg->drain_timeout;
    while (spool_pending(m->sp) > 0 && m->host->monotonic(m->node) < deadline && !atomic_load(&m->refused))
        usleep(10000);
    s_stop_thread(m);
    uint64_t left = spool_pending(m->sp);
    if (left)
        m->host->log(m->node, EW_LOG_WARN,
                     "%" PRIu64 " messages not yet acknowledged by broker %s stay in the spool %s; they are "
                     "sent when edgewatch next starts",
                     left, m->cfg->broker, m->spool_dir);
    return EW_OK;
}

static const ew_plugin s_plugin = {
    EW_PLUGIN_HEADER,
    .kind = EW_KIND_SINK,
    .name = "mqtt",
    .version = "1.1.0",
    .description = "Publishes one JSON object per sample or alert event to an MQTT broker, through a crash-safe spool",
    .license = "MIT",
    .options = s_options,
    .config_size = sizeof(mqtt_config),
    .init = s_init,
    .start = s_start,
    .consume = s_consume,
    .flush = s_flush,
    .destroy = s_destroy,
    .validate = s_validate,
    .consume_event = s_consume_event,
};

EW_PLUGIN_EXPORT(s_plugin)
