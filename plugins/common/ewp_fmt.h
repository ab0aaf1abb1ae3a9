/* ewp_fmt: numbers as JSON text, and the log rate limit plugins share. */
#ifndef EWP_FMT_H
#define EWP_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room for any output of ewp_fmt_json_number, with its NUL. */
#define EWP_NUM_BUFSIZE 32

/* Writes `v` as short decimal text that reads back as the same double ("null"
 * for NaN and infinities, which JSON cannot express): integers below 2^53 and
 * values with at most 8 decimals exactly, without printf; otherwise the
 * shortest of %.15g, %.16g and %.17g that round-trips. Returns the length.
 * Relies on the C locale for the decimal point, as the host never changes
 * LC_NUMERIC. */
size_t ewp_fmt_json_number(double v, char *out);

/* Whether the n-th (1-based) occurrence of a repeated problem should be
 * logged: the first 10, then every 1000th, so a bad input stays visible
 * without flooding the log. */
static inline bool ewp_should_report(uint64_t n)
{
    return n <= 10 || n % 1000 == 0;
}

#endif
