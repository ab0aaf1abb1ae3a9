/* ewp_fmt: shortest round-tripping decimal text for doubles, for JSON output. */
#include "ewp_fmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Integers exactly representable as doubles print as integers directly. */
#define S_INT_LIMIT 9007199254740992.0 /* 2^53 */

static size_t s_format_int(int64_t v, char *out)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t len = 0;
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    out[len] = '\0';
    return len;
}

/* Writes mant / 10^digits in fixed notation ("-0.0012" for -12, 4). */
static size_t s_format_fixed(int64_t mant, int digits, char *out)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = mant < 0 ? (uint64_t)0 - (uint64_t)mant : (uint64_t)mant;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (n <= (size_t)digits)
        tmp[n++] = '0'; /* at least one digit before the point */
    size_t len = 0;
    if (mant < 0)
        out[len++] = '-';
    while (n) {
        if (n == (size_t)digits)
            out[len++] = '.';
        out[len++] = tmp[--n];
    }
    out[len] = '\0';
    return len;
}

/* Readings with a few decimals (21.5, 1013.25) are most of what sinks print.
 * If r = round(v * 10^d) satisfies r / 10^d == v, the text "r with d decimals"
 * reads back as v: strtod rounds that decimal correctly, and so does the
 * division of the exact integers r and 10^d, so both give the same double.
 * The smallest such d is the shortest text; no printf or strtod needed. */
static size_t s_format_short_decimal(double v, char *out)
{
    static const double pow10[] = {1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8};
    double mag = fabs(v);
    if (!(mag >= 1e-4 && mag < 1e15))
        return 0;
    for (int d = 1; d <= 8; d++) {
        double scaled = v * pow10[d - 1];
        if (fabs(scaled) >= S_INT_LIMIT)
            return 0;
        double r = nearbyint(scaled);
        if (r / pow10[d - 1] == v)
            return s_format_fixed((int64_t)r, d, out);
    }
    return 0;
}

size_t ewp_fmt_json_number(double v, char *out)
{
    if (!isfinite(v)) {
        memcpy(out, "null", 5);
        return 4;
    }
    /* -0.0 takes the printf path so that its sign survives. */
    if (fabs(v) < S_INT_LIMIT && v == trunc(v) && !(v == 0 && signbit(v)))
        return s_format_int((int64_t)v, out);
    size_t len = s_format_short_decimal(v, out);
    if (len)
        return len;
    for (int prec = 15; prec < 17; prec++) {
        int n = snprintf(out, EWP_NUM_BUFSIZE, "%.*g", prec, v);
        if (n > 0 && n < EWP_NUM_BUFSIZE && strtod(out, NULL) == v)
            return (size_t)n;
    }
    int n = snprintf(out, EWP_NUM_BUFSIZE, "%.17g", v);
    return n > 0 ? (size_t)n : 0;
}
