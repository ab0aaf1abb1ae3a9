/* modbus_map: parses and checks the modbus source's register map, groups it into
 * read requests and decodes register contents in every byte and word order. */
#include "modbus_map.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const s_tables[MB_TABLES] = {"coil", "discrete", "holding", "input"};
static const char *const s_types[MB_TYPES] = {"bool",   "int16",  "uint16",  "int32",  "uint32",
                                              "int64",  "uint64", "float32", "float64"};
static const unsigned s_widths[MB_TYPES] = {1, 1, 1, 2, 2, 4, 4, 2, 4};
static const char *const s_orders[MB_ORDERS] = {"ABCD", "BADC", "CDAB", "DCBA"};

const char *mb_table_name(mb_table t)
{
    return t < MB_TABLES ? s_tables[t] : "?";
}

const char *mb_type_name(mb_type t)
{
    return t < MB_TYPES ? s_types[t] : "?";
}

const char *mb_order_name(mb_order o)
{
    return o < MB_ORDERS ? s_orders[o] : "?";
}

unsigned mb_type_width(mb_type t)
{
    return t < MB_TYPES ? s_widths[t] : 1;
}

bool mb_table_is_bits(mb_table t)
{
    return t == MB_COIL || t == MB_DISCRETE;
}

static int s_fail(char *err, size_t errlen, int *line, int at, const char *fmt, ...) EW_PRINTF(5, 6);

static int s_fail(char *err, size_t errlen, int *line, int at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    *line = at;
    return -1;
}

static int s_lookup(const char *word, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(word, names[i]) == 0)
            return i;
    return -1;
}

/* A finite number filling all of `text`. */
static bool s_number(const char *text, double *out)
{
    if (!*text)
        return false;
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (*end || errno == ERANGE || !isfinite(v))
        return false;
    *out = v;
    return true;
}

/* A decimal (or 0x-prefixed hexadecimal) address filling all of `text`. */
static bool s_address(const char *text, long *out)
{
    if (!*text || *text == '-' || *text == '+')
        return false;
    char *end;
    errno = 0;
    bool hex = text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
    long v = strtol(text, &end, hex ? 16 : 10);
    if (*end || errno == ERANGE || v > 1000000)
        return false;
    *out = v;
    return true;
}

#define S_WORD_MAX 64
#define S_TYPE_LIST "bool, int16, uint16, int32, uint32, int64, uint64, float32, float64"
#define S_SYNTAX "register.NAME = TABLE ADDRESS [TYPE] [ORDER] [scale=NUMBER] [offset=NUMBER]"

/* Parses one `register.NAME = ...` value. */
static int s_parse_one(const char *key, const char *value, int at, int address_base,
                       mb_order default_order, mb_channel *c, char *err, size_t errlen, int *line)
{
    char words[8][S_WORD_MAX];
    size_t nwords = 0;
    const char *p = value;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, " \t");
        if (nwords == 8)
            return s_fail(err, errlen, line, at,
                          "register.%s: too many words in \"%s\"; write " S_SYNTAX, key, value);
        if (len >= S_WORD_MAX)
            return s_fail(err, errlen, line, at, "register.%s: word \"%.*s...\" is too long", key,
                          20, p);
        memcpy(words[nwords], p, len);
        words[nwords][len] = '\0';
        nwords++;
        p += len;
    }
    if (nwords < 2)
        return s_fail(err, errlen, line, at,
                      "register.%s: \"%s\" needs at least a table and an address; write " S_SYNTAX
                      ", e.g. register.%s = holding 100 float32",
                      key, value, key);

    int table = s_lookup(words[0], s_tables, MB_TABLES);
    if (table < 0)
        return s_fail(err, errlen, line, at,
                      "register.%s: unknown table \"%s\"; use coil, discrete, holding or input", key,
                      words[0]);
    long addr;
    if (!s_address(words[1], &addr))
        return s_fail(err, errlen, line, at,
                      "register.%s: address \"%s\" is not a non-negative whole number", key,
                      words[1]);

    c->name = key;
    c->line = at;
    c->table = (mb_table)table;
    c->user_address = addr;
    c->type = mb_table_is_bits(c->table) ? MB_BOOL : MB_UINT16;
    c->order = default_order;
    c->scale = 1;
    c->offset = 0;
    bool have_type = false, have_order = false, have_scale = false, have_offset = false;
    for (size_t i = 2; i < nwords; i++) {
        const char *w = words[i];
        int k;
        if ((k = s_lookup(w, s_types, MB_TYPES)) >= 0) {
            if (have_type)
                return s_fail(err, errlen, line, at, "register.%s: two types (%s and %s)", key,
                              s_types[c->type], w);
            have_type = true;
            c->type = (mb_type)k;
        } else if ((k = s_lookup(w, s_orders, MB_ORDERS)) >= 0) {
            if (have_order)
                return s_fail(err, errlen, line, at, "register.%s: two byte/word orders (%s and %s)",
                              key, s_orders[c->order], w);
            have_order = true;
            c->order = (mb_order)k;
        } else if (strncmp(w, "scale=", 6) == 0 || strncmp(w, "offset=", 7) == 0) {
            bool is_scale = w[0] == 's';
            const char *num = w + (is_scale ? 6 : 7);
            bool *seen = is_scale ? &have_scale : &have_offset;
            if (*seen)
                return s_fail(err, errlen, line, at, "register.%s: %s is given twice", key,
                              is_scale ? "scale" : "offset");
            *seen = true;
            if (!s_number(num, is_scale ? &c->scale : &c->offset))
                return s_fail(err, errlen, line, at, "register.%s: %s \"%s\" is not a finite number",
                              key, is_scale ? "scale" : "offset", num);
        } else {
            return s_fail(err, errlen, line, at,
                          "register.%s: unknown word \"%s\"; expected a type (" S_TYPE_LIST
                          "), a byte/word order (ABCD, BADC, CDAB, DCBA), scale=NUMBER or "
                          "offset=NUMBER",
                          key, w);
        }
    }

    if (mb_table_is_bits(c->table) && c->type != MB_BOOL)
        return s_fail(err, errlen, line, at,
                      "register.%s: type %s is impossible in the %s table, which holds single bits; "
                      "use bool, or the holding or input table for %s",
                      key, s_types[c->type], s_tables[c->table], s_types[c->type]);
    if (!mb_table_is_bits(c->table) && c->type == MB_BOOL)
        return s_fail(err, errlen, line, at,
                      "register.%s: type bool is for the coil and discrete tables; a %s register "
                      "holds 16 bits: use uint16 (or int16)",
                      key, s_tables[c->table]);
    if (mb_table_is_bits(c->table) && have_order)
        return s_fail(err, errlen, line, at,
                      "register.%s: a byte/word order has no meaning for a single bit of the %s "
                      "table; remove %s",
                      key, s_tables[c->table], s_orders[c->order]);

    long first = addr - address_base;
    long last = first + (long)mb_type_width(c->type) - 1;
    long lowest = address_base, highest = 65535L + address_base;
    if (first < 0)
        return s_fail(err, errlen, line, at,
                      "register.%s: address %ld is below %ld: addresses are %d-based here "
                      "(address_base = %d); write %ld for the first %s, or set address_base = 0",
                      key, addr, lowest, address_base, address_base, lowest,
                      mb_table_is_bits(c->table) ? "bit" : "register");
    if (last > 65535)
        return s_fail(err, errlen, line, at,
                      "register.%s: %s at address %ld spans %u %s and would end at %ld, past the "
                      "last address %ld",
                      key, s_types[c->type], addr, mb_type_width(c->type),
                      mb_table_is_bits(c->table) ? "bit" : "registers", last + address_base,
                      highest);
    c->address = (uint16_t)first;
    return 0;
}

/* Orders channel indexes by table, then address (a stable insertion sort:
 * maps are small and often nearly sorted already). */
static void s_sort(const mb_channel *ch, size_t n, size_t *idx)
{
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    for (size_t i = 1; i < n; i++) {
        size_t v = idx[i], j = i;
        while (j > 0 && (ch[idx[j - 1]].table > ch[v].table ||
                         (ch[idx[j - 1]].table == ch[v].table &&
                          ch[idx[j - 1]].address > ch[v].address))) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
}

int mb_map_parse(const ew_kvlist *map, int address_base, mb_order default_order, mb_channel *out,
                 char *err, size_t errlen, int *line)
{
    *line = 0;
    if (!map || map->count == 0)
        return s_fail(err, errlen, line, 0,
                      "no register map: add one key per channel, " S_SYNTAX
                      ", e.g. register.temperature = holding 100 float32");
    for (size_t i = 0; i < map->count; i++) {
        int at = map->lines ? map->lines[i] : 0;
        if (s_parse_one(map->keys[i], map->values[i], at, address_base, default_order, &out[i], err,
                        errlen, line) < 0)
            return -1;
    }
    size_t *idx = malloc(map->count * sizeof *idx);
    if (!idx)
        return s_fail(err, errlen, line, 0, "out of memory checking the register map");
    s_sort(out, map->count, idx);
    int rc = 0;
    for (size_t k = 1; k < map->count && rc == 0; k++) {
        const mb_channel *a = &out[idx[k - 1]], *b = &out[idx[k]];
        if (a->table != b->table)
            continue;
        unsigned a_end = (unsigned)a->address + mb_type_width(a->type); /* one past */
        if (b->address < a_end) {
            /* Report at the later line of the two, which is usually the newer edit. */
            const mb_channel *late = a->line > b->line ? a : b, *early = late == a ? b : a;
            rc = s_fail(err, errlen, line, late->line,
                        "register.%s (%s %ld, %s) overlaps register.%s (%s %ld, %s, line %d): two "
                        "channels cannot share a %s; check the addresses and types",
                        late->name, s_tables[late->table], late->user_address,
                        s_types[late->type], early->name, s_tables[early->table],
                        early->user_address, s_types[early->type], early->line,
                        mb_table_is_bits(a->table) ? "bit" : "register");
        }
    }
    free(idx);
    return rc;
}

size_t mb_map_group(const mb_channel *ch, size_t n, const mb_limits *lim, size_t *idx,
                    mb_group *groups)
{
    s_sort(ch, n, idx);
    size_t ng = 0;
    for (size_t k = 0; k < n; k++) {
        const mb_channel *c = &ch[idx[k]];
        unsigned width = mb_type_width(c->type);
        unsigned max = mb_table_is_bits(c->table) ? lim->max_bits : lim->max_registers;
        if (ng > 0) {
            mb_group *g = &groups[ng - 1];
            unsigned end = (unsigned)g->start + g->count;   /* one past the group */
            unsigned new_end = (unsigned)c->address + width;
            if (g->table == c->table && c->address >= end && c->address - end <= lim->max_gap &&
                new_end - g->start <= max) {
                g->count = (uint16_t)(new_end - g->start);
                g->n++;
                continue;
            }
        }
        /* A channel wider than the limit (a 64-bit value with max_registers < 4)
         * still gets a request of its own: the protocol allows 125. */
        groups[ng++] = (mb_group){c->table, c->address, (uint16_t)width, k, 1};
    }
    return ng;
}

double mb_decode(const uint16_t *regs, mb_type t, mb_order o)
{
    unsigned words = mb_type_width(t);
    bool swap_words = o == MB_CDAB || o == MB_DCBA;
    bool swap_bytes = o == MB_BADC || o == MB_DCBA;
    uint64_t raw = 0;
    for (unsigned i = 0; i < words; i++) {
        /* Word i of the big-endian value, most significant first. */
        uint16_t w = regs[swap_words ? words - 1 - i : i];
        if (swap_bytes)
            w = (uint16_t)((w >> 8) | (w << 8));
        raw = (raw << 16) | w;
    }
    switch (t) {
    case MB_BOOL: return raw != 0;
    case MB_INT16: return (double)(int16_t)(uint16_t)raw;
    case MB_UINT16: return (double)(uint16_t)raw;
    case MB_INT32: return (double)(int32_t)(uint32_t)raw;
    case MB_UINT32: return (double)(uint32_t)raw;
    case MB_INT64: return (double)(int64_t)raw;
    case MB_UINT64: return (double)raw;
    case MB_FLOAT32: {
        uint32_t bits = (uint32_t)raw;
        float f;
        memcpy(&f, &bits, sizeof f);
        return (double)f;
    }
    case MB_FLOAT64: {
        double d;
        memcpy(&d, &raw, sizeof d);
        return d;
    }
    default: return NAN;
    }
}
