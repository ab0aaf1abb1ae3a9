/* options: validates a node's keys against a plugin's option table and fills its config struct. */
#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define S_NS_PER_S 1000000000.0

static void s_err(options_error *err, int line, const char *key, const char *fmt, ...) EW_PRINTF(4, 5);

static void s_err(options_error *err, int line, const char *key, const char *fmt, ...)
{
    if (!err)
        return;
    err->line = line;
    snprintf(err->key, sizeof err->key, "%s", key ? key : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

static const char *s_skip_space(const char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    return s;
}

/* True when only white space follows. */
static bool s_at_end(const char *s)
{
    return *s_skip_space(s) == '\0';
}

int options_parse_int(const char *text, int64_t *out)
{
    const char *s = s_skip_space(text);
    if (!*s)
        return -1;
    /* Decimal or 0x-hex; never octal, so "010" is ten. */
    const char *digits = s + (*s == '-' || *s == '+');
    int base = digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X') ? 16 : 10;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, base);
    if (errno || end == s || !s_at_end(end))
        return -1;
    *out = v;
    return 0;
}

int options_parse_double(const char *text, double *out)
{
    const char *s = s_skip_space(text);
    if (!*s)
        return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || end == s || !s_at_end(end) || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

int options_parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* Splits "12.5ms" into a number and a unit suffix (trailing space allowed). */
static int s_number_unit(const char *text, double *num, char *unit, size_t unitlen)
{
    const char *s = s_skip_space(text);
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0)
        return -1;
    end = (char *)s_skip_space(end);
    size_t n = 0;
    while (end[n] && !isspace((unsigned char)end[n]))
        n++;
    if (n >= unitlen || !s_at_end(end + n))
        return -1;
    memcpy(unit, end, n);
    unit[n] = '\0';
    *num = v;
    return 0;
}

int options_parse_duration(const char *text, int64_t *ns)
{
    static const struct {
        const char *unit;
        double ns;
    } units[] = {{"", 1e9}, {"ns", 1}, {"us", 1e3}, {"ms", 1e6}, {"s", 1e9},
                 {"m", 60e9}, {"min", 60e9}, {"h", 3600e9}, {"d", 86400e9}};
    double v;
    char unit[8];
    if (s_number_unit(text, &v, unit, sizeof unit) < 0)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(unit, units[i].unit) == 0) {
            double r = v * units[i].ns;
            if (r > 9.2e18)
                return -1;
            *ns = (int64_t)llround(r);
            return 0;
        }
    }
    return -1;
}

int options_parse_size(const char *text, uint64_t *bytes)
{
    static const struct {
        const char *unit;
        double factor;
    } units[] = {{"", 1},           {"B", 1},
                 {"KB", 1e3},       {"MB", 1e6},
                 {"GB", 1e9},       {"TB", 1e12},
                 {"KiB", 1024.0},   {"MiB", 1048576.0},
                 {"GiB", 1073741824.0}, {"TiB", 1099511627776.0},
                 {"K", 1024.0},     {"M", 1048576.0},
                 {"G", 1073741824.0}};
    double v;
    char unit[8];
    if (s_number_unit(text, &v, unit, sizeof unit) < 0)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(unit, units[i].unit) == 0) {
            double r = v * units[i].factor;
            if (r > 1.8e19 || r != floor(r))
                return -1;
            *bytes = (uint64_t)r;
            return 0;
        }
    }
    return -1;
}

const char *options_type_name(ew_opt_type type)
{
    switch (type) {
    case EW_OPT_STRING: return "string";
    case EW_OPT_INT: return "int";
    case EW_OPT_DOUBLE: return "double";
    case EW_OPT_BOOL: return "bool";
    case EW_OPT_ENUM: return "enum";
    case EW_OPT_DURATION: return "duration";
    case EW_OPT_SIZE: return "size";
    case EW_OPT_LIST: return "list";
    case EW_OPT_PREFIX: return "map";
    }
    return "unknown";
}

/* What a user should write, for messages. */
static const char *s_type_hint(ew_opt_type type)
{
    switch (type) {
    case EW_OPT_INT: return "an integer, e.g. 100";
    case EW_OPT_DOUBLE: return "a finite number, e.g. 2.5";
    case EW_OPT_BOOL: return "true or false";
    case EW_OPT_DURATION: return "a duration such as 250ms, 1.5s, 2m or 1h";
    case EW_OPT_SIZE: return "a size such as 512, 64KiB, 10MB or 1GiB";
    default: return "a value";
    }
}

static void *s_keep(options_mem *mem, void *block)
{
    if (!block)
        return NULL;
    if (mem->count == mem->cap) {
        size_t cap = mem->cap ? mem->cap * 2 : 16;
        void **b = realloc(mem->blocks, cap * sizeof *b);
        if (!b) {
            free(block);
            return NULL;
        }
        mem->blocks = b;
        mem->cap = cap;
    }
    mem->blocks[mem->count++] = block;
    return block;
}

void options_mem_free(options_mem *mem)
{
    if (!mem)
        return;
    for (size_t i = 0; i < mem->count; i++)
        free(mem->blocks[i]);
    free(mem->blocks);
    memset(mem, 0, sizeof *mem);
}

/* Index of `value` in "a|b|c", or -1. */
static int s_choice_index(const char *choices, const char *value)
{
    size_t vlen = strlen(value);
    int idx = 0;
    for (const char *p = choices; p && *p; idx++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == vlen && strncmp(p, value, n) == 0)
            return idx;
        p = bar ? bar + 1 : NULL;
    }
    return -1;
}

static bool s_has_range(const ew_option *opt)
{
    return !(opt->min == 0 && opt->max == 0);
}

static int s_check_range(const ew_option *opt, double v, int line, options_error *err)
{
    if (!s_has_range(opt) || (v >= opt->min && v <= opt->max))
        return 0;
    const char *what = opt->type == EW_OPT_DURATION ? " seconds"
                       : opt->type == EW_OPT_LIST || opt->type == EW_OPT_PREFIX ? " items"
                       : opt->type == EW_OPT_SIZE   ? " bytes"
                                                    : "";
    s_err(err, line, opt->name, "%.15g%s is out of range: allowed %.15g to %.15g%s", v, what, opt->min,
          opt->max, what);
    return -1;
}

/* Splits a comma-separated list into trimmed, non-empty items. */
static int s_parse_list(const char *text, ew_list *out, options_mem *mem)
{
    size_t n = 0;
    for (const char *p = text; *p; p++)
        n += *p == ',';
    n += 1;
    const char **items = s_keep(mem, calloc(n, sizeof *items));
    char *copy = s_keep(mem, strdup(text));
    if (!items || !copy)
        return -2;
    size_t count = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        tok = (char *)s_skip_space(tok);
        size_t len = strlen(tok);
        while (len && isspace((unsigned char)tok[len - 1]))
            tok[--len] = '\0';
        if (len)
            items[count++] = tok;
    }
    out->count = count;
    out->items = items;
    return 0;
}

/* Parses one value into its slot; -1 with err on a bad value. */
static int s_set(const ew_option *opt, const char *value, int line, void *config, options_mem *mem,
                 options_error *err)
{
    char *slot = (char *)config + opt->offset;
    switch (opt->type) {
    case EW_OPT_STRING: {
        char *copy = s_keep(mem, strdup(value));
        if (!copy)
            goto oom;
        const char *str = copy;
        memcpy(slot, &str, sizeof str);
        return 0;
    }
    case EW_OPT_INT: {
        int64_t v;
        if (options_parse_int(value, &v) < 0)
            goto bad;
        if (s_check_range(opt, (double)v, line, err) < 0)
            return -1;
        memcpy(slot, &v, sizeof v);
        return 0;
    }
    case EW_OPT_DOUBLE: {
        double v;
        if (options_parse_double(value, &v) < 0)
            goto bad;
        if (s_check_range(opt, v, line, err) < 0)
            return -1;
        memcpy(slot, &v, sizeof v);
        return 0;
    }
    case EW_OPT_BOOL: {
        bool v;
        if (options_parse_bool(value, &v) < 0)
            goto bad;
        memcpy(slot, &v, sizeof v);
        return 0;
    }
    case EW_OPT_ENUM: {
        int idx = s_choice_index(opt->choices, value);
        if (idx < 0) {
            char shown[80];
            snprintf(shown, sizeof shown, "%s", value);
            s_err(err, line, opt->name, "\"%s\" is not one of: %s", shown, opt->choices);
            return -1;
        }
        memcpy(slot, &idx, sizeof idx);
        return 0;
    }
    case EW_OPT_DURATION: {
        int64_t v;
        if (options_parse_duration(value, &v) < 0)
            goto bad;
        if (s_check_range(opt, (double)v / S_NS_PER_S, line, err) < 0)
            return -1;
        memcpy(slot, &v, sizeof v);
        return 0;
    }
    case EW_OPT_SIZE: {
        uint64_t v;
        if (options_parse_size(value, &v) < 0)
            goto bad;
        if (s_check_range(opt, (double)v, line, err) < 0)
            return -1;
        memcpy(slot, &v, sizeof v);
        return 0;
    }
    case EW_OPT_LIST: {
        ew_list v;
        if (s_parse_list(value, &v, mem) < 0)
            goto oom;
        if (s_check_range(opt, (double)v.count, line, err) < 0)
            return -1;
        memcpy(slot, &v, sizeof v);
        return 0;
    }
    case EW_OPT_PREFIX:
        break; /* filled from all its keys at once by s_set_prefix */
    }
    s_err(err, line, opt->name, "option has an unknown type %d (plugin bug)", (int)opt->type);
    return -1;
bad: {
    char shown[80];
    snprintf(shown, sizeof shown, "%s", value);
    s_err(err, line, opt->name, "\"%s\" is not %s", shown, s_type_hint(opt->type));
    return -1;
}
oom:
    s_err(err, line, opt->name, "out of memory");
    return -1;
}

static size_t s_type_size(ew_opt_type type)
{
    switch (type) {
    case EW_OPT_STRING: return sizeof(const char *);
    case EW_OPT_INT: return sizeof(int64_t);
    case EW_OPT_DOUBLE: return sizeof(double);
    case EW_OPT_BOOL: return sizeof(bool);
    case EW_OPT_ENUM: return sizeof(int);
    case EW_OPT_DURATION: return sizeof(int64_t);
    case EW_OPT_SIZE: return sizeof(uint64_t);
    case EW_OPT_LIST: return sizeof(ew_list);
    case EW_OPT_PREFIX: return sizeof(ew_kvlist);
    }
    return 0;
}

/* [a-z0-9_]+, or for a prefix option [a-z0-9_]+ followed by one '.'. */
static bool s_name_valid(const char *name, bool prefix)
{
    size_t n = name ? strlen(name) : 0;
    if (prefix) {
        if (n < 2 || name[n - 1] != '.')
            return false;
        n--;
    }
    if (n == 0 || n > 48)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)name[i]) || isdigit((unsigned char)name[i]) || name[i] == '_'))
            return false;
    return true;
}

int options_check_table(const ew_option *table, size_t config_size, char *err, size_t errlen)
{
    if (!table)
        return 0;
    char scratch[1024];
    if (config_size > sizeof scratch) {
        snprintf(err, errlen, "config_size %zu is larger than %zu bytes", config_size, sizeof scratch);
        return -1;
    }
    for (const ew_option *o = table; o->name; o++) {
        bool prefix = o->type == EW_OPT_PREFIX;
        if (!s_name_valid(o->name, prefix)) {
            snprintf(err, errlen, "option name \"%s\" is not %s", o->name,
                     prefix ? "[a-z0-9_]+ followed by '.'" : "[a-z0-9_]+");
            return -1;
        }
        if (prefix && o->default_value) {
            snprintf(err, errlen, "prefix option \"%s\" cannot have a default", o->name);
            return -1;
        }
        for (const ew_option *p = table; p < o; p++) {
            if (strcmp(p->name, o->name) == 0) {
                snprintf(err, errlen, "option \"%s\" is declared twice", o->name);
                return -1;
            }
        }
        size_t sz = s_type_size(o->type);
        if (!sz) {
            snprintf(err, errlen, "option \"%s\" has unknown type %d", o->name, (int)o->type);
            return -1;
        }
        if (o->offset > config_size || sz > config_size - o->offset) {
            snprintf(err, errlen, "option \"%s\" lies outside the %zu-byte config struct", o->name,
                     config_size);
            return -1;
        }
        if (o->type == EW_OPT_ENUM && (!o->choices || !*o->choices)) {
            snprintf(err, errlen, "enum option \"%s\" has no choices", o->name);
            return -1;
        }
        if (o->default_value) {
            options_mem mem = {0};
            options_error oerr = {0};
            memset(scratch, 0, config_size);
            int rc = s_set(o, o->default_value, 0, scratch, &mem, &oerr);
            options_mem_free(&mem);
            if (rc < 0) {
                snprintf(err, errlen, "default of option \"%s\" is invalid: %s", o->name, oerr.message);
                return -1;
            }
        }
    }
    return 0;
}

/* Whether `key` is one of a prefix option's keys: the prefix and something after it. */
static bool s_prefix_match(const ew_option *o, const char *key)
{
    size_t n = strlen(o->name);
    return o->type == EW_OPT_PREFIX && strncmp(key, o->name, n) == 0 && key[n] != '\0';
}

static const ew_option *s_find(const ew_option *table, const char *key)
{
    for (const ew_option *o = table; o && o->name; o++)
        if (o->type == EW_OPT_PREFIX ? s_prefix_match(o, key) : strcmp(o->name, key) == 0)
            return o;
    return NULL;
}

/* Gathers every key of a prefix option, in file order, into its ew_kvlist. */
static int s_set_prefix(const ew_option *o, const options_kv *kvs, size_t count, void *config,
                        options_mem *mem, options_error *err)
{
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        n += s_prefix_match(o, kvs[i].key);
    ew_kvlist v = {0};
    const char **keys = s_keep(mem, calloc(n + 1, sizeof *keys));
    const char **values = s_keep(mem, calloc(n + 1, sizeof *values));
    int *lines = s_keep(mem, calloc(n + 1, sizeof *lines));
    if (!keys || !values || !lines) {
        s_err(err, 0, o->name, "out of memory");
        return -1;
    }
    size_t plen = strlen(o->name);
    for (size_t i = 0; i < count; i++) {
        if (!s_prefix_match(o, kvs[i].key))
            continue;
        keys[v.count] = kvs[i].key + plen;
        values[v.count] = kvs[i].value;
        lines[v.count] = kvs[i].line;
        v.count++;
    }
    if (o->required && v.count == 0) {
        s_err(err, 0, o->name, "required: add at least one `%sNAME = ...` line (%s)", o->name,
              o->description ? o->description : "");
        return -1;
    }
    if (s_check_range(o, (double)v.count, v.count ? lines[0] : 0, err) < 0)
        return -1;
    v.keys = keys;
    v.values = values;
    v.lines = lines;
    memcpy((char *)config + o->offset, &v, sizeof v);
    return 0;
}

/* "window, threshold, warmup" for an unknown-key message. */
static void s_known_keys(const ew_option *table, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (const ew_option *o = table; o && o->name && used + 1 < outlen; o++) {
        int n = snprintf(out + used, outlen - used, "%s%s", used ? ", " : "", o->name);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (!used)
        snprintf(out, outlen, "(this plugin takes no options)");
}

int options_fill(const ew_option *table, size_t config_size, const options_kv *kvs, size_t count,
                 void *config, options_mem *mem, options_error *err)
{
    if (config_size)
        memset(config, 0, config_size);
    for (size_t i = 0; i < count; i++) {
        if (!s_find(table, kvs[i].key)) {
            char known[400];
            s_known_keys(table, known, sizeof known);
            s_err(err, kvs[i].line, kvs[i].key, "unknown option; valid options: %s", known);
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(kvs[j].key, kvs[i].key) == 0) {
                s_err(err, kvs[i].line, kvs[i].key, "set twice (first at line %d)", kvs[j].line);
                return -1;
            }
        }
    }
    for (const ew_option *o = table; o && o->name; o++) {
        if (o->type == EW_OPT_PREFIX) {
            if (s_set_prefix(o, kvs, count, config, mem, err) < 0)
                return -1;
            continue;
        }
        const options_kv *kv = NULL;
        for (size_t i = 0; i < count; i++)
            if (strcmp(kvs[i].key, o->name) == 0)
                kv = &kvs[i];
        if (kv) {
            if (s_set(o, kv->value, kv->line, config, mem, err) < 0)
                return -1;
        } else if (o->required) {
            s_err(err, 0, o->name, "required option is missing: add `%s = <%s>` (%s)", o->name,
                  options_type_name(o->type), o->description ? o->description : "");
            return -1;
        } else if (o->default_value) {
            if (s_set(o, o->default_value, 0, config, mem, err) < 0)
                return -1;
        }
    }
    return 0;
}

/* Prints a range such as "2..100000" or "" when the option has none. */
static void s_range_text(const ew_option *o, char *out, size_t outlen, int markdown)
{
    if (o->type == EW_OPT_ENUM) {
        snprintf(out, outlen, "%s", o->choices);
        /* A bare | would end a markdown table cell. */
        for (char *p = out; markdown && (p = strchr(p, '|')) != NULL;)
            *p = '/';
    }
    else if (s_has_range(o))
        snprintf(out, outlen, "%.15g..%.15g%s", o->min, o->max,
                 o->type == EW_OPT_DURATION                              ? " s"
                 : o->type == EW_OPT_LIST || o->type == EW_OPT_PREFIX ? " items"
                                                                       : "");
    else
        out[0] = '\0';
}

void options_describe(const ew_option *table, FILE *out, int markdown)
{
    if (markdown) {
        fprintf(out, "| option | type | default | range | description |\n");
        fprintf(out, "|---|---|---|---|---|\n");
    }
    if (!table || !table->name) {
        fprintf(out, markdown ? "| (none) | | | | |\n" : "  (no options)\n");
        return;
    }
    for (const ew_option *o = table; o->name; o++) {
        char range[160];
        s_range_text(o, range, sizeof range, markdown);
        const char *def = o->required ? "(required)" : o->default_value ? o->default_value : "";
        char name[64];
        snprintf(name, sizeof name, "%s%s", o->name, o->type == EW_OPT_PREFIX ? "NAME" : "");
        if (markdown) {
            fprintf(out, "| `%s` | %s | %s%s%s | %s | %s |\n", name, options_type_name(o->type),
                    *def && !o->required ? "`" : "", def, *def && !o->required ? "`" : "", range,
                    o->description ? o->description : "");
        } else {
            fprintf(out, "  %-18s %-9s default: %-14s%s%s\n", name, options_type_name(o->type),
                    *def ? def : "(none)", *range ? " range: " : "", range);
            fprintf(out, "  %18s %s\n", "", o->description ? o->description : "");
        }
    }
}
