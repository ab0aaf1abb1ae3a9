/* config: reads the pipeline INI through inih, keeping every key's line number for messages. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void config_error_set(config_error *err, int line, const char *section, const char *key,
                      const char *fmt, ...)
{
    if (!err)
        return;
    err->line = line;
    snprintf(err->section, sizeof err->section, "%s", section ? section : "");
    snprintf(err->key, sizeof err->key, "%s", key ? key : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

void config_error_format(const char *path, const config_error *err, char *out, size_t outlen)
{
    char where[64] = "";
    if (err->line > 0)
        snprintf(where, sizeof where, ":%d", err->line);
    char sec[128] = "";
    if (err->section[0])
        snprintf(sec, sizeof sec, " [%s]", err->section);
    /* "PATH:LINE: [section] key: message"; absent parts leave no stray colon or space. */
    const char *tail = err->section[0] || err->key[0] ? ":" : "";
    snprintf(out, outlen, "%s%s:%s%s%s%s %s", path, where, sec, err->key[0] ? " " : "", err->key, tail,
             err->message);
}

/* State shared by the line reader and the key handler while inih parses. */
typedef struct s_parser {
    FILE *in;
    char *buf;
    size_t cap;
    int line;
    bool line_indented; /* the current line starts with white space (a continuation) */
    config *cfg;
    config_error *err;
    bool failed;
} s_parser;

static void s_fail(s_parser *p, int line, const char *section, const char *key, const char *msg)
{
    if (p->failed)
        return;
    p->failed = true;
    config_error_set(p->err, line, section, key, "%s", msg);
}

static int s_add_section(s_parser *p, const char *name, int line)
{
    config *cfg = p->cfg;
    for (size_t i = 0; i < cfg->count; i++) {
        if (strcmp(cfg->sections[i].name, name) == 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "section is defined twice (first at line %d); merge the two",
                     cfg->sections[i].line);
            s_fail(p, line, name, NULL, msg);
            return -1;
        }
    }
    if (cfg->count == cfg->cap) {
        size_t cap = cfg->cap ? cfg->cap * 2 : 8;
        config_section *s = realloc(cfg->sections, cap * sizeof *s);
        if (!s)
            return -1;
        cfg->sections = s;
        cfg->cap = cap;
    }
    config_section *sec = &cfg->sections[cfg->count];
    memset(sec, 0, sizeof *sec);
    sec->name = strdup(name);
    if (!sec->name)
        return -1;
    sec->line = line;
    cfg->count++;
    return 0;
}

/* inih reads lines through this, so the parser knows each line's number and
 * sees section headers even when a section has no keys. */
static char *s_reader(char *str, int num, void *stream)
{
    s_parser *p = stream;
    ssize_t n = getline(&p->buf, &p->cap, p->in);
    if (n < 0)
        return NULL;
    p->line++;
    /* Editors on Windows start UTF-8 files with a byte order mark: drop it here,
     * so the section header after it is seen by this reader as by inih. */
    if (p->line == 1 && n >= 3 && memcmp(p->buf, "\xEF\xBB\xBF", 3) == 0) {
        memmove(p->buf, p->buf + 3, (size_t)n - 2);
        n -= 3;
    }
    /* The newline does not count: a line of num - 2 characters plus '\n' fits in str. */
    ssize_t chars = n > 0 && p->buf[n - 1] == '\n' ? n - 1 : n;
    if (chars > num - 2) {
        char msg[160];
        snprintf(msg, sizeof msg, "line is %zd characters long; at most %d are allowed", chars, num - 2);
        s_fail(p, p->line, NULL, NULL, msg);
        snprintf(str, (size_t)num, ";\n");
        return str;
    }
    memcpy(str, p->buf, (size_t)n + 1);
    p->line_indented = n > 0 && (str[0] == ' ' || str[0] == '\t');
    const char *s = str;
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '[') {
        if (p->line_indented) {
            /* inih would take it as the continuation of the value above. */
            s_fail(p, p->line, NULL, NULL,
                   "a section header must start at the beginning of its line: remove the leading white space");
            return str;
        }
        const char *end = strchr(s, ']');
        if (!end) {
            s_fail(p, p->line, NULL, NULL, "section header has no closing ']'");
            return str;
        }
        char name[96];
        size_t len = (size_t)(end - s - 1);
        if (len == 0 || len >= sizeof name) {
            s_fail(p, p->line, NULL, NULL, "section name is empty or longer than 95 characters");
            return str;
        }
        memcpy(name, s + 1, len);
        name[len] = '\0';
        if (s_add_section(p, name, p->line) < 0)
            s_fail(p, p->line, name, NULL, "out of memory");
    }
    return str;
}

static int s_add_entry(config_section *sec, const char *key, char *value, int line)
{
    if (sec->count == sec->cap) {
        size_t cap = sec->cap ? sec->cap * 2 : 8;
        config_entry *e = realloc(sec->entries, cap * sizeof *e);
        if (!e)
            return -1;
        sec->entries = e;
        sec->cap = cap;
    }
    char *k = strdup(key);
    if (!k)
        return -1;
    sec->entries[sec->count++] = (config_entry){.key = k, .value = value, .line = line};
    return 0;
}

static int s_handler(void *user, const char *section, const char *name, const char *value)
{
    s_parser *p = user;
    if (p->failed)
        return 1;
    if (!section[0]) {
        s_fail(p, p->line, NULL, name, "key outside any section: put it under [pipeline] or a node section");
        return 1;
    }
    config_section *sec = p->cfg->count ? &p->cfg->sections[p->cfg->count - 1] : NULL;
    /* inih hands over section names cut to 49 characters; the reader kept the whole name. */
    if (!sec || strncmp(sec->name, section, strlen(section)) != 0) {
        s_fail(p, p->line, section, name, "internal error: section out of step with the parser");
        return 1;
    }
    section = sec->name;
    char experr[300];
    char *expanded = config_expand(value, experr, sizeof experr);
    if (!expanded) {
        s_fail(p, p->line, section, name, experr);
        return 1;
    }
    if (p->line_indented && sec->count > 0 &&
        strncmp(sec->entries[sec->count - 1].key, name, strlen(name)) == 0) {
        /* A continuation line: inih hands it over as the same key again, but
         * cut to the 49 characters it remembers of a key, so a prefix match
         * is the match (inih takes every indented line after a key as its
         * continuation, so no other key can be meant). */
        config_entry *last = &sec->entries[sec->count - 1];
        size_t a = strlen(last->value), b = strlen(expanded);
        char *joined = realloc(last->value, a + b + 2);
        if (!joined) {
            free(expanded);
            s_fail(p, p->line, section, name, "out of memory");
            return 1;
        }
        joined[a] = ' ';
        memcpy(joined + a + 1, expanded, b + 1);
        last->value = joined;
        free(expanded);
        return 1;
    }
    for (size_t i = 0; i < sec->count; i++) {
        if (strcmp(sec->entries[i].key, name) == 0) {
            char msg[120];
            snprintf(msg, sizeof msg, "key is set twice in this section (first at line %d)",
                     sec->entries[i].line);
            free(expanded);
            s_fail(p, p->line, section, name, msg);
            return 1;
        }
    }
    if (s_add_entry(sec, name, expanded, p->line) < 0) {
        free(expanded);
        s_fail(p, p->line, section, name, "out of memory");
    }
    return 1;
}

static int s_parse(const char *path, FILE *in, config *cfg, config_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->path = strdup(path);
    if (!cfg->path) {
        config_error_set(err, 0, NULL, NULL, "out of memory");
        return -1;
    }
    s_parser p = {.in = in, .cfg = cfg, .err = err};
    int rc = ini_parse_stream(s_reader, &p, s_handler, &p);
    free(p.buf);
    if (!p.failed && rc != 0) {
        if (rc > 0)
            config_error_set(err, rc, NULL, NULL,
                             "cannot parse this line: expected `key = value`, `[section]` or a comment "
                             "starting with ; or #");
        else
            config_error_set(err, 0, NULL, NULL, "out of memory while reading the file");
        p.failed = true;
    }
    if (p.failed) {
        config_free(cfg);
        return -1;
    }
    return 0;
}

int config_load(const char *path, config *cfg, config_error *err)
{
    FILE *in = fopen(path, "r");
    if (!in) {
        memset(cfg, 0, sizeof *cfg);
        config_error_set(err, 0, NULL, NULL, "cannot open the configuration file: %s", strerror(errno));
        return -1;
    }
    int rc = s_parse(path, in, cfg, err);
    fclose(in);
    return rc;
}

int config_load_string(const char *path, const char *text, config *cfg, config_error *err)
{
    FILE *in = fmemopen((void *)text, strlen(text), "r");
    if (!in) {
        memset(cfg, 0, sizeof *cfg);
        config_error_set(err, 0, NULL, NULL, "out of memory");
        return -1;
    }
    int rc = s_parse(path, in, cfg, err);
    fclose(in);
    return rc;
}

/* A growing string for expansion. */
typedef struct s_buf {
    char *s;
    size_t len, cap;
} s_buf;

static int s_put(s_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *ns = realloc(b->s, cap);
        if (!ns)
            return -1;
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
    return 0;
}

char *config_expand(const char *in, char *err, size_t errlen)
{
    s_buf b = {0};
    if (s_put(&b, "", 0) < 0)
        goto oom;
    for (const char *p = in; *p;) {
        if (p[0] == '$' && p[1] == '$') {
            if (s_put(&b, "$", 1) < 0)
                goto oom;
            p += 2;
            continue;
        }
        if (p[0] != '$' || p[1] != '{') {
            const char *next = strchr(p + 1, '$');
            size_t n = next ? (size_t)(next - p) : strlen(p);
            if (s_put(&b, p, n) < 0)
                goto oom;
            p += n;
            continue;
        }
        const char *name = p + 2;
        size_t nlen = 0;
        while (name[nlen] == '_' || isalnum((unsigned char)name[nlen]))
            nlen++;
        if (nlen == 0 || isdigit((unsigned char)name[0]) || nlen > 128) {
            snprintf(err, errlen, "bad variable reference: ${ must be followed by a name of letters, digits and _ (write $$ for a literal $)");
            goto fail;
        }
        const char *after = name + nlen;
        const char *def = NULL;
        size_t dlen = 0;
        if (after[0] == ':' && after[1] == '-') {
            def = after + 2;
            const char *close = strchr(def, '}');
            if (!close) {
                snprintf(err, errlen, "variable reference ${%.*s:-... has no closing }", (int)nlen, name);
                goto fail;
            }
            dlen = (size_t)(close - def);
            after = close;
        }
        if (*after != '}') {
            snprintf(err, errlen, "variable reference ${%.*s has no closing } (or use ${NAME:-default})",
                     (int)nlen, name);
            goto fail;
        }
        char var[130];
        memcpy(var, name, nlen);
        var[nlen] = '\0';
        const char *val = getenv(var);
        if (val && (*val || !def)) {
            if (s_put(&b, val, strlen(val)) < 0)
                goto oom;
        } else if (def) {
            if (s_put(&b, def, dlen) < 0)
                goto oom;
        } else {
            snprintf(err, errlen, "environment variable %s is not set: set it, or give a default with ${%s:-value}",
                     var, var);
            goto fail;
        }
        p = after + 1;
    }
    return b.s;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    free(b.s);
    return NULL;
}

const config_section *config_find(const config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->count; i++)
        if (strcmp(cfg->sections[i].name, name) == 0)
            return &cfg->sections[i];
    return NULL;
}

const config_entry *config_get(const config_section *sec, const char *key)
{
    for (size_t i = 0; sec && i < sec->count; i++)
        if (strcmp(sec->entries[i].key, key) == 0)
            return &sec->entries[i];
    return NULL;
}

void config_free(config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->count; i++) {
        config_section *s = &cfg->sections[i];
        for (size_t j = 0; j < s->count; j++) {
            free(s->entries[j].key);
            free(s->entries[j].value);
        }
        free(s->entries);
        free(s->name);
    }
    free(cfg->sections);
    free(cfg->path);
    memset(cfg, 0, sizeof *cfg);
}
