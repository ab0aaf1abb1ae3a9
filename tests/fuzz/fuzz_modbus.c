/* fuzz_modbus: the modbus source's register map (arbitrary `register.NAME = ...`
 * text) and the decoding of arbitrary response registers for every type and order. */
#include "../../plugins/modbus/modbus_map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { S_MAX_KEYS = 64 };

/* Trims white space as the INI reader does for keys and values. */
static char *s_trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    /* Byte 0: address base (bit 0) and default order (bits 1-2); bytes 1-2: the
     * request limits; the rest: the map, one `NAME = VALUE` per line. */
    int base = data[0] & 1;
    mb_order order = (mb_order)((data[0] >> 1) & 3);
    mb_limits lim = {1u + data[1] % 125u, 1u + (unsigned)data[2] * 8u % 2000u, data[1] >> 2};

    /* Every register of the input read as a response, for every type and order. */
    size_t nregs = (size - 3) / 2;
    uint16_t regs[4];
    for (size_t i = 0; i < nregs; i++) {
        size_t k;
        for (k = 0; k < 4; k++)
            regs[k] = i + k < nregs ? (uint16_t)(data[3 + 2 * (i + k)] << 8 | data[4 + 2 * (i + k)]) : 0;
        for (int t = MB_INT16; t < MB_TYPES; t++)
            for (int o = 0; o < MB_ORDERS; o++)
                (void)mb_decode(regs, (mb_type)t, (mb_order)o);
    }

    char *text = malloc(size - 3 + 1);
    if (!text)
        return 0;
    memcpy(text, data + 3, size - 3);
    text[size - 3] = '\0';
    const char *keys[S_MAX_KEYS], *values[S_MAX_KEYS];
    int lines[S_MAX_KEYS];
    size_t n = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line && n < S_MAX_KEYS;
         line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        /* The host never passes an empty key (the part after "register."). */
        keys[n] = s_trim(line);
        values[n] = s_trim(eq + 1);
        if (!*keys[n])
            continue;
        lines[n] = (int)n + 1;
        n++;
    }
    ew_kvlist map = {n, keys, values, lines};
    mb_channel ch[S_MAX_KEYS];
    char err[400];
    int line = 0;
    if (mb_map_parse(&map, base, order, ch, err, sizeof err, &line) == 0) {
        size_t idx[S_MAX_KEYS];
        mb_group groups[S_MAX_KEYS];
        size_t ng = mb_map_group(ch, n, &lim, idx, groups);
        if (ng > n)
            abort();
        for (size_t g = 0; g < ng; g++) {
            if (groups[g].first + groups[g].n > n)
                abort();
            /* The request must cover its channels. */
            for (size_t j = groups[g].first; j < groups[g].first + groups[g].n; j++) {
                const mb_channel *c = &ch[idx[j]];
                unsigned w = mb_table_is_bits(c->table) ? 1 : mb_type_width(c->type);
                if (c->table != groups[g].table || c->address < groups[g].start ||
                    (unsigned)c->address + w > (unsigned)groups[g].start + groups[g].count)
                    abort();
            }
        }
        for (size_t i = 0; i < n; i++) {
            uint16_t r[4] = {0};
            memcpy(r, data + 3, size - 3 < sizeof r ? size - 3 : sizeof r);
            if (ch[i].type != MB_BOOL)
                (void)mb_decode(r, ch[i].type, ch[i].order);
        }
    }
    free(text);
    return 0;
}
