/* modbus_map: the register map of the modbus source (parsing, validation,
 * request grouping and value decoding), free of libmodbus and of any I/O so
 * that `edgewatch check` and the plugin tests can use it alone. */
#ifndef MODBUS_MAP_H
#define MODBUS_MAP_H

#include <edgewatch/plugin.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The four Modbus data tables. */
typedef enum mb_table {
    MB_COIL = 0,     /* read/write bits, function 1 */
    MB_DISCRETE = 1, /* read-only bits, function 2 */
    MB_HOLDING = 2,  /* read/write 16-bit registers, function 3 */
    MB_INPUT = 3,    /* read-only 16-bit registers, function 4 */
    MB_TABLES = 4,
} mb_table;

/* How the bits or registers of one channel are read as a number. */
typedef enum mb_type {
    MB_BOOL = 0,
    MB_INT16,
    MB_UINT16,
    MB_INT32,
    MB_UINT32,
    MB_INT64,
    MB_UINT64,
    MB_FLOAT32,
    MB_FLOAT64,
    MB_TYPES,
} mb_type;

/* Byte and word order of multi-byte values, named by where the bytes of the
 * big-endian value A B C D (A most significant) arrive on the wire:
 * ABCD big-endian words, most significant first (the Modbus convention);
 * BADC bytes swapped inside each register; CDAB registers in reverse order
 * (least significant word first); DCBA both (fully little-endian). For 64-bit
 * types the same two swaps apply to all four registers. */
typedef enum mb_order {
    MB_ABCD = 0,
    MB_BADC = 1,
    MB_CDAB = 2,
    MB_DCBA = 3,
    MB_ORDERS = 4,
} mb_order;

/* The choices string of an order option, in mb_order order. */
#define MB_ORDER_CHOICES "ABCD|BADC|CDAB|DCBA"

/* One channel of the map, as declared by `register.NAME = ...`. */
typedef struct mb_channel {
    const char *name;       /* NAME; points into the config's ew_kvlist */
    int line;               /* config line of the key, 0 when unknown */
    mb_table table;
    uint16_t address;       /* protocol (0-based) address of the first register or bit */
    long user_address;      /* the address as written (for messages) */
    mb_type type;
    mb_order order;
    double scale, offset;   /* value = raw * scale + offset */
} mb_channel;

/* Limits of one read request, and how far apart two channels may lie and
 * still share a request. */
typedef struct mb_limits {
    unsigned max_registers; /* 1..125 */
    unsigned max_bits;      /* 1..2000 */
    unsigned max_gap;       /* unused registers or bits read to join two channels */
} mb_limits;

/* One read request: `count` registers or bits of `table` from `start`,
 * covering channels idx[first .. first + n) of the grouping's index array. */
typedef struct mb_group {
    mb_table table;
    uint16_t start;
    uint16_t count;
    size_t first, n;
} mb_group;

/* Names for messages. */
const char *mb_table_name(mb_table t);
const char *mb_type_name(mb_type t);
const char *mb_order_name(mb_order o);

/* Registers (or, for bool, bits) a type spans. */
unsigned mb_type_width(mb_type t);
/* Whether the table holds bits (coil, discrete) rather than registers. */
bool mb_table_is_bits(mb_table t);

/* Parses the map into out[map->count] and checks it: syntax, types possible
 * for their table, addresses in range for `address_base` (0 or 1), no two
 * channels of one table sharing a register. Channels keep the map's order.
 * Returns 0, or -1 with a message naming the key in err and its line in *line. */
int mb_map_parse(const ew_kvlist *map, int address_base, mb_order default_order, mb_channel *out,
                 char *err, size_t errlen, int *line);

/* Groups channels into as few requests as `lim` allows. idx[n] receives the
 * channels sorted by table and address, groups[n] the requests; returns the
 * number of requests. */
size_t mb_map_group(const mb_channel *ch, size_t n, const mb_limits *lim, size_t *idx,
                    mb_group *groups);

/* The raw value of a register type from its mb_type_width(t) registers as
 * read (regs[0] first on the wire), before scale and offset. */
double mb_decode(const uint16_t *regs, mb_type t, mb_order o);

#endif
