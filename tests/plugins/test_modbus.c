/* Tests of the modbus source through the SDK harness: register decoding in every
 * type and byte/word order, map validation with the line at fault, request
 * grouping, and link faults (refused connection, a device that never answers). */
#include <edgewatch/testing.h>

#include "../../plugins/modbus/modbus_map.h"
#include "options.h"
#include "ptest.h"

#include <arpa/inet.h>
#include <check.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* --- decoding -------------------------------------------------------------------- */

/* Hand-written wire images of the big-endian bytes 01 02 03 04 (05 06 07 08). */
START_TEST(decode_known_images)
{
    /* 0x01020304 = 16909060 */
    const uint16_t abcd[] = {0x0102, 0x0304}, badc[] = {0x0201, 0x0403}, cdab[] = {0x0304, 0x0102},
                   dcba[] = {0x0403, 0x0201};
    ck_assert_double_eq(mb_decode(abcd, MB_UINT32, MB_ABCD), 16909060.0);
    ck_assert_double_eq(mb_decode(badc, MB_UINT32, MB_BADC), 16909060.0);
    ck_assert_double_eq(mb_decode(cdab, MB_UINT32, MB_CDAB), 16909060.0);
    ck_assert_double_eq(mb_decode(dcba, MB_UINT32, MB_DCBA), 16909060.0);
    /* 0x0102030405060708 = 72623859790382856 (a multiple of 8, exact in a double) */
    const uint16_t q_abcd[] = {0x0102, 0x0304, 0x0506, 0x0708},
                   q_badc[] = {0x0201, 0x0403, 0x0605, 0x0807},
                   q_cdab[] = {0x0708, 0x0506, 0x0304, 0x0102},
                   q_dcba[] = {0x0807, 0x0605, 0x0403, 0x0201};
    ck_assert_double_eq(mb_decode(q_abcd, MB_UINT64, MB_ABCD), 72623859790382856.0);
    ck_assert_double_eq(mb_decode(q_badc, MB_INT64, MB_BADC), 72623859790382856.0);
    ck_assert_double_eq(mb_decode(q_cdab, MB_UINT64, MB_CDAB), 72623859790382856.0);
    ck_assert_double_eq(mb_decode(q_dcba, MB_INT64, MB_DCBA), 72623859790382856.0);
    /* float32 123.456f = 0x42F6E979; float64 -2.5 = 0xC004000000000000 */
    const uint16_t f_abcd[] = {0x42F6, 0xE979}, f_dcba[] = {0x79E9, 0xF642},
                   f_cdab[] = {0xE979, 0x42F6}, f_badc[] = {0xF642, 0x79E9};
    ck_assert_double_eq(mb_decode(f_abcd, MB_FLOAT32, MB_ABCD), (double)123.456f);
    ck_assert_double_eq(mb_decode(f_badc, MB_FLOAT32, MB_BADC), (double)123.456f);
    ck_assert_double_eq(mb_decode(f_cdab, MB_FLOAT32, MB_CDAB), (double)123.456f);
    ck_assert_double_eq(mb_decode(f_dcba, MB_FLOAT32, MB_DCBA), (double)123.456f);
    const uint16_t d_abcd[] = {0xC004, 0, 0, 0}, d_cdab[] = {0, 0, 0, 0xC004},
                   d_badc[] = {0x04C0, 0, 0, 0}, d_dcba[] = {0, 0, 0, 0x04C0};
    ck_assert_double_eq(mb_decode(d_abcd, MB_FLOAT64, MB_ABCD), -2.5);
    ck_assert_double_eq(mb_decode(d_cdab, MB_FLOAT64, MB_CDAB), -2.5);
    ck_assert_double_eq(mb_decode(d_badc, MB_FLOAT64, MB_BADC), -2.5);
    ck_assert_double_eq(mb_decode(d_dcba, MB_FLOAT64, MB_DCBA), -2.5);
    /* 16-bit: only the byte swap matters; sign extension of int16. */
    const uint16_t s1[] = {0xFF38}, s2[] = {0x38FF};
    ck_assert_double_eq(mb_decode(s1, MB_INT16, MB_ABCD), -200.0);
    ck_assert_double_eq(mb_decode(s1, MB_INT16, MB_CDAB), -200.0);
    ck_assert_double_eq(mb_decode(s2, MB_INT16, MB_BADC), -200.0);
    ck_assert_double_eq(mb_decode(s2, MB_INT16, MB_DCBA), -200.0);
    ck_assert_double_eq(mb_decode(s1, MB_UINT16, MB_ABCD), 65336.0);
    const uint16_t neg32[] = {0xFFFF, 0xFFFE};
    ck_assert_double_eq(mb_decode(neg32, MB_INT32, MB_ABCD), -2.0);
    ck_assert_double_eq(mb_decode(neg32, MB_UINT32, MB_ABCD), 4294967294.0);
}
END_TEST

/* Lays out the big-endian bytes be[0..2*words) as registers in `order`, the
 * way a device would put them on the wire. */
static void s_encode(const uint8_t *be, unsigned words, mb_order order, uint16_t *regs)
{
    for (unsigned i = 0; i < words; i++) {
        uint8_t hi = be[2 * i], lo = be[2 * i + 1];
        if (order == MB_BADC || order == MB_DCBA) {
            uint8_t t = hi;
            hi = lo;
            lo = t;
        }
        unsigned slot = order == MB_CDAB || order == MB_DCBA ? words - 1 - i : i;
        regs[slot] = (uint16_t)(hi << 8 | lo);
    }
}

static void s_be(uint64_t v, unsigned bytes, uint8_t *be)
{
    for (unsigned i = 0; i < bytes; i++)
        be[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
}

/* Every register type in every order, for values at the edges of each range. */
START_TEST(decode_every_type_and_order)
{
    static const int64_t ints[] = {0, 1, -1, 12345, -12345, 32767, -32768, 2147483647, -2147483647 - 1,
                                   -1234567890123LL, 9007199254740992LL, INT64_MIN};
    static const uint64_t uints[] = {0, 1, 65535, 4294967295ULL, 1234567890123ULL,
                                     18446744073709549568ULL};
    static const double floats[] = {0.0, -0.0, 1.5, -273.15, 3.4e38, 1e-40, 6.02214076e23, INFINITY};
    for (int o = 0; o < MB_ORDERS; o++) {
        uint8_t be[8];
        uint16_t regs[4];
        for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
            int64_t v = ints[i];
            if (v >= INT16_MIN && v <= INT16_MAX) {
                s_be((uint64_t)v, 2, be);
                s_encode(be, 1, (mb_order)o, regs);
                ck_assert_double_eq(mb_decode(regs, MB_INT16, (mb_order)o), (double)v);
            }
            if (v >= INT32_MIN && v <= INT32_MAX) {
                s_be((uint64_t)v, 4, be);
                s_encode(be, 2, (mb_order)o, regs);
                ck_assert_double_eq(mb_decode(regs, MB_INT32, (mb_order)o), (double)v);
            }
            s_be((uint64_t)v, 8, be);
            s_encode(be, 4, (mb_order)o, regs);
            ck_assert_double_eq(mb_decode(regs, MB_INT64, (mb_order)o), (double)v);
        }
        for (size_t i = 0; i < sizeof uints / sizeof *uints; i++) {
            uint64_t v = uints[i];
            if (v <= UINT16_MAX) {
                s_be(v, 2, be);
                s_encode(be, 1, (mb_order)o, regs);
                ck_assert_double_eq(mb_decode(regs, MB_UINT16, (mb_order)o), (double)v);
            }
            if (v <= UINT32_MAX) {
                s_be(v, 4, be);
                s_encode(be, 2, (mb_order)o, regs);
                ck_assert_double_eq(mb_decode(regs, MB_UINT32, (mb_order)o), (double)v);
            }
            s_be(v, 8, be);
            s_encode(be, 4, (mb_order)o, regs);
            ck_assert_double_eq(mb_decode(regs, MB_UINT64, (mb_order)o), (double)v);
        }
        for (size_t i = 0; i < sizeof floats / sizeof *floats; i++) {
            float f = (float)floats[i];
            uint32_t b32;
            memcpy(&b32, &f, 4);
            s_be(b32, 4, be);
            s_encode(be, 2, (mb_order)o, regs);
            double got = mb_decode(regs, MB_FLOAT32, (mb_order)o);
            ck_assert(memcmp(&got, &(double){(double)f}, sizeof got) == 0); /* -0.0 too */
            uint64_t b64;
            memcpy(&b64, &floats[i], 8);
            s_be(b64, 8, be);
            s_encode(be, 4, (mb_order)o, regs);
            got = mb_decode(regs, MB_FLOAT64, (mb_order)o);
            ck_assert(memcmp(&got, &floats[i], sizeof got) == 0);
        }
        /* A NaN stays a NaN (the device's own "no value"). */
        const uint16_t nan32[] = {0x7FC0, 0x0000};
        ck_assert(isnan(mb_decode(nan32, MB_FLOAT32, MB_ABCD)));
    }
}
END_TEST

/* --- the map --------------------------------------------------------------------- */

/* A map of `n` keys (lines 10, 11, ...) parsed with address_base `base`. */
static int s_parse(size_t n, const char *const *keys, const char *const *values, int base,
                   mb_channel *out, char *err, size_t errlen, int *line)
{
    int lines[16];
    for (size_t i = 0; i < n; i++)
        lines[i] = 10 + (int)i;
    ew_kvlist map = {n, keys, values, lines};
    return mb_map_parse(&map, base, MB_ABCD, out, err, errlen, line);
}

START_TEST(map_parses_every_field)
{
    const char *keys[] = {"temp", "run", "count", "level"};
    const char *values[] = {"holding 100 float32 CDAB scale=0.1 offset=-40", "coil 7",
                            "input 0x10 uint64 DCBA", "  discrete   65535  bool "};
    mb_channel ch[4];
    char err[512] = "";
    int line = -1;
    ck_assert_msg(s_parse(4, keys, values, 0, ch, err, sizeof err, &line) == 0, "%s", err);
    ck_assert_str_eq(ch[0].name, "temp");
    ck_assert_int_eq(ch[0].table, MB_HOLDING);
    ck_assert_uint_eq(ch[0].address, 100);
    ck_assert_int_eq(ch[0].type, MB_FLOAT32);
    ck_assert_int_eq(ch[0].order, MB_CDAB);
    ck_assert_double_eq(ch[0].scale, 0.1);
    ck_assert_double_eq(ch[0].offset, -40.0);
    ck_assert_int_eq(ch[0].line, 10);
    ck_assert_int_eq(ch[1].table, MB_COIL);
    ck_assert_int_eq(ch[1].type, MB_BOOL);
    ck_assert_double_eq(ch[1].scale, 1.0);
    ck_assert_uint_eq(ch[2].address, 16);
    ck_assert_int_eq(ch[2].type, MB_UINT64);
    ck_assert_int_eq(ch[2].order, MB_DCBA);
    ck_assert_uint_eq(ch[3].address, 65535);
    ck_assert_int_eq(ch[3].table, MB_DISCRETE);

    /* 1-based: "holding 1" is protocol address 0 and 65536 the last one. */
    const char *keys1[] = {"a", "b"};
    const char *values1[] = {"holding 1", "holding 65536"};
    ck_assert_msg(s_parse(2, keys1, values1, 1, ch, err, sizeof err, &line) == 0, "%s", err);
    ck_assert_uint_eq(ch[0].address, 0);
    ck_assert_uint_eq(ch[1].address, 65535);
    ck_assert_int_eq(ch[0].type, MB_UINT16); /* the default register type */
}
END_TEST

/* Each bad entry: (value, its line, a fragment of the message). The bad entry
 * comes second, after a good one at line 10, so the line must be 11. */
START_TEST(map_rejects_bad_entries)
{
    static const struct {
        const char *value;
        int base;
        const char *message;
    } bad[] = {
        {"holding 101 uint16", 0, "overlaps register.first (holding 100, float32, line 10)"},
        {"holding 99 int32", 0, "overlaps register.first"},
        {"holding 65535 float32", 0, "would end at 65536, past the last address 65535"},
        {"holding 65535 uint64", 1, "past the last address 65536"},
        {"coil 3 float32", 0, "type float32 is impossible in the coil table"},
        {"discrete 3 int16", 0, "impossible in the discrete table"},
        {"holding 3 bool", 0, "type bool is for the coil and discrete tables"},
        {"coil 3 ABCD", 0, "order has no meaning for a single bit"},
        {"holding 3 flaot32", 0, "unknown word \"flaot32\""},
        {"holding 3 float32 scale=abc", 0, "scale \"abc\" is not a finite number"},
        {"holding 3 float32 offset=inf", 0, "offset \"inf\" is not a finite number"},
        {"holding 3 int16 int32", 0, "two types"},
        {"holding 3 ABCD CDAB", 0, "two byte/word orders"},
        {"holding 3 scale=1 scale=2", 0, "scale is given twice"},
        {"register 3", 0, "unknown table \"register\""},
        {"holding -3", 0, "is not a non-negative whole number"},
        {"holding 3x", 0, "is not a non-negative whole number"},
        {"holding", 0, "needs at least a table and an address"},
        {"holding 0", 1, "address 0 is below 1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *keys[] = {"first", "second"};
        const char *first = bad[i].base ? "holding 101 float32" : "holding 100 float32";
        const char *values[] = {first, bad[i].value};
        mb_channel ch[2];
        char err[512] = "";
        int line = 0;
        ck_assert_msg(s_parse(2, keys, values, (int)bad[i].base, ch, err, sizeof err, &line) == -1,
                      "accepted \"%s\"", bad[i].value);
        ck_assert_msg(strstr(err, bad[i].message) != NULL, "\"%s\": message \"%s\" lacks \"%s\"",
                      bad[i].value, err, bad[i].message);
        ck_assert_msg(strstr(err, "register.second") != NULL, "message lacks the key: %s", err);
        ck_assert_int_eq(line, 11);
    }
    /* Overlaps in different tables are fine; the same address in coil and holding too. */
    const char *keys[] = {"a", "b", "c"};
    const char *values[] = {"holding 0 float64", "input 0 float64", "coil 0"};
    mb_channel ch[3];
    char err[512];
    int line;
    ck_assert_msg(s_parse(3, keys, values, 0, ch, err, sizeof err, &line) == 0, "%s", err);
    /* An empty map. */
    ck_assert_int_eq(s_parse(0, keys, values, 0, ch, err, sizeof err, &line), -1);
    ck_assert_ptr_nonnull(strstr(err, "no register map"));
}
END_TEST

/* --- grouping -------------------------------------------------------------------- */

/* Parses and groups `n` entries; channel names are not kept (they point into
 * this function's frame), so the tests look at tables, addresses and indexes. */
static size_t s_group(size_t n, const char *const *values, mb_limits lim, mb_group *groups,
                      size_t *idx, mb_channel *ch)
{
    const char *keys[200];
    int lines[200];
    char names[200][8];
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "c%zu", i);
        keys[i] = names[i];
        lines[i] = (int)i + 1;
    }
    ew_kvlist map = {n, keys, values, lines};
    char err[512];
    int line;
    ck_assert_msg(mb_map_parse(&map, 0, MB_ABCD, ch, err, sizeof err, &line) == 0, "%s", err);
    return mb_map_group(ch, n, &lim, idx, groups);
}

START_TEST(grouping_joins_adjacent_registers)
{
    mb_channel ch[200];
    mb_group g[200];
    size_t idx[200];
    mb_limits lim = {125, 2000, 0};
    /* Out of order in the map; adjacent once sorted. Different tables never share. */
    const char *v1[] = {"holding 2 float32", "holding 0 int32", "holding 4 uint64", "input 8",
                        "coil 5", "coil 6", "holding 9", "discrete 6", "input 9"};
    size_t n = s_group(9, v1, lim, g, idx, ch);
    ck_assert_uint_eq(n, 5);
    /* coil 5..6 */
    ck_assert_int_eq(g[0].table, MB_COIL);
    ck_assert_uint_eq(g[0].start, 5);
    ck_assert_uint_eq(g[0].count, 2);
    ck_assert_int_eq(g[1].table, MB_DISCRETE);
    /* holding 0..7 in one request (int32, float32, uint64), holding 9 alone (gap of 1) */
    ck_assert_int_eq(g[2].table, MB_HOLDING);
    ck_assert_uint_eq(g[2].start, 0);
    ck_assert_uint_eq(g[2].count, 8);
    ck_assert_uint_eq(g[2].n, 3);
    ck_assert_int_eq(ch[idx[g[2].first]].type, MB_INT32); /* holding 0, second in the map */
    ck_assert_uint_eq(idx[g[2].first], 1);
    ck_assert_uint_eq(g[3].start, 9);
    ck_assert_int_eq(g[4].table, MB_INPUT);
    ck_assert_uint_eq(g[4].count, 2);

    /* max_gap = 1 reads holding 8 unmapped to join holding 9. */
    lim.max_gap = 1;
    n = s_group(9, v1, lim, g, idx, ch);
    ck_assert_uint_eq(n, 4);
    ck_assert_uint_eq(g[2].count, 10);
}
END_TEST

START_TEST(grouping_respects_protocol_limits)
{
    mb_channel ch[200];
    mb_group g[200];
    size_t idx[200];
    char text[200][32];
    const char *v[200];
    /* 130 adjacent registers: 125 + 5. */
    for (int i = 0; i < 130; i++) {
        snprintf(text[i], sizeof text[i], "holding %d", 1000 + i);
        v[i] = text[i];
    }
    mb_limits lim = {125, 2000, 0};
    size_t n = s_group(130, v, lim, g, idx, ch);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(g[0].count, 125);
    ck_assert_uint_eq(g[1].start, 1125);
    ck_assert_uint_eq(g[1].count, 5);
    /* A float64 never straddles two requests: 31 of them are 124 registers. */
    for (int i = 0; i < 40; i++) {
        snprintf(text[i], sizeof text[i], "input %d float64", 4 * i);
        v[i] = text[i];
    }
    n = s_group(40, v, lim, g, idx, ch);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(g[0].count, 124);
    ck_assert_uint_eq(g[1].start, 124);
    /* A lower max_registers; bits up to max_bits. */
    lim.max_registers = 10;
    n = s_group(40, v, lim, g, idx, ch);
    ck_assert_uint_eq(n, 20);
    for (int i = 0; i < 150; i++) {
        snprintf(text[i], sizeof text[i], "coil %d", 10 * i);
        v[i] = text[i];
    }
    lim = (mb_limits){125, 2000, 9};
    n = s_group(150, v, lim, g, idx, ch);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(g[0].count, 1491);
    lim.max_bits = 1000;
    n = s_group(150, v, lim, g, idx, ch);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_le(g[0].count, 1000);
}
END_TEST

/* --- the plugin through the harness ---------------------------------------------- */

static ew_harness *s_harness(const char *const *kv)
{
    ew_harness *h = ew_harness_new(ew_plugin_entry(), NULL);
    ck_assert_ptr_nonnull(h);
    ptest_options(h, kv);
    return h;
}

START_TEST(descriptor_and_channels_in_map_order)
{
    const ew_plugin *p = ew_plugin_entry();
    ck_assert_int_eq(p->kind, EW_KIND_SOURCE);
    ck_assert_str_eq(p->name, "modbus");
    ck_assert_ptr_nonnull(p->validate);
    char err[256];
    ck_assert_msg(options_check_table(p->options, p->config_size, err, sizeof err) == 0, "%s", err);
    ew_harness *h = s_harness((const char *[]){"host", "127.0.0.1", "register.zeta", "holding 10",
                                                "register.alpha", "coil 0", "register.mid",
                                                "input 3 float32", NULL});
    int rc = ew_harness_init(h);
    ck_assert_msg(rc == EW_OK, "%s", ew_harness_error(h));
    const ew_schema *s = ew_harness_output(h);
    ck_assert_uint_eq(s->channels, 3);
    ck_assert_str_eq(s->names[0], "zeta");
    ck_assert_str_eq(s->names[1], "alpha");
    ck_assert_str_eq(s->names[2], "mid");
    ew_harness_destroy(&h);
}
END_TEST

START_TEST(validate_names_the_line)
{
    /* The third option plays line 3. */
    ew_harness *h = s_harness((const char *[]){"host", "127.0.0.1", "register.a", "holding 0 float32",
                                                "register.b", "holding 1", NULL});
    ck_assert_int_eq(ew_harness_init(h), EW_EINVAL);
    ck_assert_msg(strstr(ew_harness_error(h), "(line 3)") &&
                      strstr(ew_harness_error(h), "register.b (holding 1, uint16) overlaps"),
                  "%s", ew_harness_error(h));
    ew_harness_destroy(&h);

    h = s_harness((const char *[]){"register.a", "holding 0", NULL});
    ck_assert_int_eq(ew_harness_init(h), EW_EINVAL);
    ck_assert_ptr_nonnull(strstr(ew_harness_error(h), "no transport: set host"));
    ew_harness_destroy(&h);

    h = s_harness((const char *[]){"host", "x", "device", "/dev/ttyS0", "register.a", "holding 0", NULL});
    ck_assert_int_eq(ew_harness_init(h), EW_EINVAL);
    ck_assert_ptr_nonnull(strstr(ew_harness_error(h), "both host"));
    ew_harness_destroy(&h);

    h = s_harness((const char *[]){"device", "/dev/ttyS0", "unit_id", "0", "register.a", "holding 0", NULL});
    ck_assert_int_eq(ew_harness_init(h), EW_EINVAL);
    ck_assert_ptr_nonnull(strstr(ew_harness_error(h), "broadcast address"));
    ew_harness_destroy(&h);

    h = s_harness((const char *[]){"host", "x", "rs485", "true", "register.a", "holding 0", NULL});
    ck_assert_int_eq(ew_harness_init(h), EW_EINVAL);
    ck_assert_ptr_nonnull(strstr(ew_harness_error(h), "rs485 = true applies to a serial device"));
    ew_harness_destroy(&h);

    h = s_harness((const char *[]){"host", "x", NULL});
    ck_assert_int_eq(ew_harness_init(h), EW_EINVAL);
    ck_assert_ptr_nonnull(strstr(ew_harness_error(h), "no register map"));
    ew_harness_destroy(&h);

    h = s_harness((const char *[]){"host", "x", "register.a", "holding 0", "parity", "mark", NULL});
    ck_assert_int_ne(ew_harness_init(h), EW_OK);
    ew_harness_destroy(&h);
}
END_TEST

static double s_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A loopback port with a listener that never accepts: connections complete in
 * the kernel's backlog but requests are never answered. */
static int s_silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 4), 0);
    socklen_t len = sizeof a;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

START_TEST(refused_connection_is_transient)
{
    int port;
    int fd = s_silent_listener(&port);
    close(fd); /* now nothing listens there */
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    ew_harness *h = s_harness((const char *[]){"host", "127.0.0.1", "port", ps, "timeout", "200ms",
                                                "register.a", "holding 0", NULL});
    ck_assert_msg(ew_harness_init(h) == EW_OK, "%s", ew_harness_error(h));
    int64_t wake = 0;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(ew_harness_produce(h, &wake), EW_EAGAIN);
        ck_assert_msg(strstr(ew_harness_error(h), "cannot connect to Modbus TCP 127.0.0.1:") != NULL,
                      "%s", ew_harness_error(h));
    }
    ck_assert_uint_eq(ew_harness_emitted(h), 0);
    ew_harness_destroy(&h);
}
END_TEST

/* A device that never answers: every attempt times out, the call gives up
 * after timeout x (retries + 1) and emits nothing. */
START_TEST(silent_device_times_out_within_budget)
{
    int port;
    int fd = s_silent_listener(&port);
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    ew_harness *h = s_harness((const char *[]){"host", "127.0.0.1", "port", ps, "timeout", "300ms",
                                                "retries", "2", "register.a", "holding 0",
                                                "register.b", "input 0", NULL});
    ck_assert_msg(ew_harness_init(h) == EW_OK, "%s", ew_harness_error(h));
    int64_t wake = 0;
    double t0 = s_seconds();
    ck_assert_int_eq(ew_harness_produce(h, &wake), EW_EAGAIN);
    double took = s_seconds() - t0;
    ck_assert_msg(strstr(ew_harness_error(h), "the device stopped answering") ||
                      strstr(ew_harness_error(h), "no answer reading holding 0"),
                  "%s", ew_harness_error(h));
    /* Three attempts; the last may find the budget spent on a very slow machine. */
    uint64_t timeouts = ew_harness_counter(h, "modbus_timeouts");
    ck_assert_msg(timeouts == 3 || timeouts == 2, "%llu timeouts", (unsigned long long)timeouts);
    ck_assert_uint_eq(ew_harness_counter(h, "modbus_requests"), timeouts);
    ck_assert_uint_eq(ew_harness_emitted(h), 0);
    /* Bounded: 3 x 300 ms, with a wide margin for a loaded machine (no lower bound). */
    ck_assert_msg(took < 5.0, "produce blocked %.2f s", took);
    ew_harness_destroy(&h);
    close(fd);
}
END_TEST

/* rs485 = true on a port without RS-485 support (a pseudo-terminal) is fatal,
 * with a message that says what to do, not retried forever. */
START_TEST(rs485_refused_is_fatal)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    ck_assert_int_ge(master, 0);
    ck_assert_int_eq(grantpt(master), 0);
    ck_assert_int_eq(unlockpt(master), 0);
    char dev[128];
    ck_assert_int_eq(ptsname_r(master, dev, sizeof dev), 0);
    ew_harness *h = s_harness((const char *[]){"device", dev, "rs485", "true", "register.a",
                                                "holding 0", NULL});
    ck_assert_msg(ew_harness_init(h) == EW_OK, "%s", ew_harness_error(h));
    int64_t wake = 0;
    ck_assert_int_eq(ew_harness_produce(h, &wake), EW_ERR);
    ck_assert_msg(strstr(ew_harness_error(h), "refuses RS-485 mode") &&
                      strstr(ew_harness_error(h), "set rs485 = false"),
                  "%s", ew_harness_error(h));
    ew_harness_destroy(&h);
    close(master);
}
END_TEST

static Suite *s_suite(void)
{
    Suite *s = suite_create("modbus");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, decode_known_images);
    tcase_add_test(tc, decode_every_type_and_order);
    tcase_add_test(tc, map_parses_every_field);
    tcase_add_test(tc, map_rejects_bad_entries);
    tcase_add_test(tc, grouping_joins_adjacent_registers);
    tcase_add_test(tc, grouping_respects_protocol_limits);
    tcase_add_test(tc, descriptor_and_channels_in_map_order);
    tcase_add_test(tc, validate_names_the_line);
    tcase_add_test(tc, refused_connection_is_transient);
    tcase_add_test(tc, silent_device_times_out_within_budget);
    tcase_add_test(tc, rs485_refused_is_fatal);
    suite_add_tcase(s, tc);
    return s;
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* `test_modbus --bench HOST PORT POLLS`: times whole polls of 100 holding
 * registers (100..199, one request, 100 uint16 channels) through the plugin,
 * for tools/bench.d/modbus. Prints one line of figures in milliseconds. */
static int s_bench(const char *host, const char *port, long polls)
{
    ew_harness *h = ew_harness_new(ew_plugin_entry(), NULL);
    char keys[100][24], values[100][24];
    ew_harness_option(h, "host", host);
    ew_harness_option(h, "port", port);
    ew_harness_option(h, "poll", "1ms");
    ew_harness_option(h, "timeout", "2s");
    for (int i = 0; i < 100; i++) {
        snprintf(keys[i], sizeof keys[i], "register.r%03d", i);
        snprintf(values[i], sizeof values[i], "holding %d", 100 + i);
        ew_harness_option(h, keys[i], values[i]);
    }
    if (ew_harness_init(h) != EW_OK) {
        fprintf(stderr, "init: %s\n", ew_harness_error(h));
        return 1;
    }
    double *ms = calloc((size_t)polls, sizeof *ms);
    long done = 0;
    while (done < polls) {
        size_t before = ew_harness_emitted(h);
        int64_t wake = 0;
        double t0 = s_seconds();
        int rc = ew_harness_produce(h, &wake);
        double t1 = s_seconds();
        if (rc != EW_OK) {
            fprintf(stderr, "poll %ld: %s\n", done, ew_harness_error(h));
            free(ms);
            ew_harness_destroy(&h);
            return 1;
        }
        if (ew_harness_emitted(h) > before)
            ms[done++] = (t1 - t0) * 1e3;
        if (ew_harness_emitted(h) > 1000)
            ew_harness_clear(h);
        struct timespec until = {(time_t)(wake / 1000000000LL), (long)(wake % 1000000000LL)};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL);
    }
    double sum = 0;
    for (long i = 0; i < polls; i++)
        sum += ms[i];
    qsort(ms, (size_t)polls, sizeof *ms, s_cmp_double);
    printf("polls=%ld registers=100 requests_per_poll=1 mean_ms=%.3f p50_ms=%.3f p99_ms=%.3f "
           "max_ms=%.3f\n",
           polls, sum / (double)polls, ms[polls / 2], ms[(size_t)((double)polls * 0.99)],
           ms[polls - 1]);
    free(ms);
    ew_harness_destroy(&h);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--bench") == 0)
        return s_bench(argv[2], argv[3], atol(argv[4]) > 0 ? atol(argv[4]) : 1000);
    return ptest_run(s_suite());
}
