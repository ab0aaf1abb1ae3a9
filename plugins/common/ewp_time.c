/* ewp_time: calendar arithmetic (Hinnant's civil algorithms) for UTC
 * timestamp parsing and formatting without timegm() or the TZ environment. */
#include "ewp_time.h"

#include <stdbool.h>

#define S_NS_PER_S 1000000000LL

int64_t ewp_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void s_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool s_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned s_days_in_month(int64_t y, unsigned m)
{
    static const unsigned char days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && s_leap(y) ? 29 : days[m - 1];
}

/* Reads exactly `n` digits at *p (within end) into *out and advances *p. */
static bool s_digits(const char **p, const char *end, int n, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        if (*p >= end || **p < '0' || **p > '9')
            return false;
        v = v * 10 + (unsigned)(**p - '0');
        (*p)++;
    }
    *out = v;
    return true;
}

static bool s_expect(const char **p, const char *end, char c)
{
    if (*p >= end || **p != c)
        return false;
    (*p)++;
    return true;
}

int ewp_time_parse(const char *text, size_t len, int64_t *ns)
{
    const char *p = text, *end = text + len;
    unsigned year, mon, day, hour, min, sec;
    if (!s_digits(&p, end, 4, &year) || !s_expect(&p, end, '-') || !s_digits(&p, end, 2, &mon) ||
        !s_expect(&p, end, '-') || !s_digits(&p, end, 2, &day))
        return -1;
    if (p >= end || (*p != 'T' && *p != 't' && *p != ' '))
        return -1;
    p++;
    if (!s_digits(&p, end, 2, &hour) || !s_expect(&p, end, ':') || !s_digits(&p, end, 2, &min) ||
        !s_expect(&p, end, ':') || !s_digits(&p, end, 2, &sec))
        return -1;
    if (mon < 1 || mon > 12 || day < 1 || day > s_days_in_month(year, mon) || hour > 23 ||
        min > 59 || sec > 60)
        return -1;

    int64_t frac = 0;
    if (p < end && (*p == '.' || *p == ',')) {
        p++;
        int digits = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 9)
                frac = frac * 10 + (*p - '0');
            digits++;
            p++;
        }
        if (digits == 0)
            return -1;
        for (int i = digits; i < 9; i++)
            frac *= 10;
    }

    int64_t offset_s = 0;
    if (p < end && (*p == 'Z' || *p == 'z')) {
        p++;
    } else if (p < end && (*p == '+' || *p == '-')) {
        int sign = *p == '-' ? -1 : 1;
        unsigned oh, om = 0;
        p++;
        if (!s_digits(&p, end, 2, &oh))
            return -1;
        if (p < end && *p == ':') {
            p++;
            if (!s_digits(&p, end, 2, &om))
                return -1;
        } else if (p < end && !s_digits(&p, end, 2, &om)) {
            return -1;
        }
        if (oh > 23 || om > 59)
            return -1;
        offset_s = sign * (int64_t)(oh * 3600 + om * 60);
    }
    if (p != end)
        return -1;

    /* Local time minus its offset is UTC. Years 0000-9999 keep this in range. */
    int64_t secs = ewp_days_from_civil(year, mon, day) * 86400 + (int64_t)hour * 3600 + (int64_t)min * 60 + sec -
                   offset_s;
    int64_t out;
    if (__builtin_mul_overflow(secs, S_NS_PER_S, &out) || __builtin_add_overflow(out, frac, &out))
        return -1;
    *ns = out;
    return 0;
}

static char *s_put2(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

size_t ewp_time_format(int64_t ns, char *out)
{
    /* Floor division, so that instants before 1970 print correctly. */
    int64_t secs = ns / S_NS_PER_S, rem = ns % S_NS_PER_S;
    if (rem < 0) {
        rem += S_NS_PER_S;
        secs--;
    }
    int64_t days = secs / 86400, sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days--;
    }
    int64_t y;
    unsigned m, d;
    s_civil_from_days(days, &y, &m, &d);
    unsigned yy = (unsigned)y; /* 1677..2262 for any int64 ns */
    char *p = out;
    p = s_put2(p, yy / 100);
    p = s_put2(p, yy % 100);
    *p++ = '-';
    p = s_put2(p, m);
    *p++ = '-';
    p = s_put2(p, d);
    *p++ = 'T';
    p = s_put2(p, (unsigned)(sod / 3600));
    *p++ = ':';
    p = s_put2(p, (unsigned)(sod / 60 % 60));
    *p++ = ':';
    p = s_put2(p, (unsigned)(sod % 60));
    *p++ = '.';
    unsigned us = (unsigned)(rem / 1000);
    for (int i = 5; i >= 0; i--) {
        p[i] = (char)('0' + us % 10);
        us /= 10;
    }
    p += 6;
    *p++ = 'Z';
    *p = '\0';
    return (size_t)(p - out);
}
