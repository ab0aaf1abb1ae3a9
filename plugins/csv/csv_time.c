/* csv_time: epoch numbers and strptime-style timestamps for the csv source. */
#include "csv_time.h"

#include "ewp_time.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define S_NS 1000000000LL

/* Splits "[+-]digits[.digits]": sign, integer digits [*ip, *ip + *il), fraction
 * digits [*fp, *fp + *fl). Returns false when the text is not of that form. */
static bool s_split_number(const char *t, bool *neg, const char **ip, size_t *il, const char **fp,
                           size_t *fl)
{
    *neg = *t == '-';
    if (*t == '-' || *t == '+')
        t++;
    *ip = t;
    while (*t >= '0' && *t <= '9')
        t++;
    *il = (size_t)(t - *ip);
    *fp = t;
    *fl = 0;
    if (*t == '.') {
        *fp = ++t;
        while (*t >= '0' && *t <= '9')
            t++;
        *fl = (size_t)(t - *fp);
    }
    return *t == '\0' && *il + *fl > 0;
}

int csv_time_epoch(const char *text, int64_t unit_ns, int64_t *ns)
{
    bool neg;
    const char *ip, *fp;
    size_t il, fl;
    if (!s_split_number(text, &neg, &ip, &il, &fp, &fl))
        return -1;
    /* Integer part in units, times the unit; accumulated as a negative number
     * when negative so that INT64_MIN itself is reachable. */
    int64_t v = 0;
    for (size_t i = 0; i < il; i++) {
        int64_t d = ip[i] - '0';
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, neg ? -d : d, &v))
            return -1;
    }
    if (__builtin_mul_overflow(v, unit_ns, &v))
        return -1;
    /* The fraction of a unit, in nanoseconds: digit k is worth unit_ns / 10^k. */
    int64_t frac = 0, weight = unit_ns;
    for (size_t i = 0; i < fl; i++) {
        if (weight % 10 != 0)
            break; /* finer than a nanosecond */
        weight /= 10;
        frac += (fp[i] - '0') * weight;
    }
    if (__builtin_add_overflow(v, neg ? -frac : frac, &v))
        return -1;
    *ns = v;
    return 0;
}

bool csv_time_epoch_guess(const char *text, int64_t *unit_ns)
{
    bool neg;
    const char *ip, *fp;
    size_t il, fl;
    if (!s_split_number(text, &neg, &ip, &il, &fp, &fl))
        return false;
    while (il > 1 && *ip == '0')
        ip++, il--;
    *unit_ns = il < 12 ? S_NS : il < 15 ? 1000000 : il < 18 ? 1000 : 1;
    return true;
}

const char *csv_time_format_check(const char *format)
{
    if (!strchr(format, '%'))
        return "it has no % conversion; write a strptime format such as %d/%m/%Y %H:%M:%S, "
               "or one of auto, iso8601, epoch_s, epoch_ms, epoch_us, epoch_ns";
    for (const char *p = strchr(format, '%'); p; p = strchr(p + 2, '%')) {
        if (p[1] == 's')
            return "%s would be read as local time; use timestamp_format = epoch_s for epoch "
                   "seconds";
        if (p[1] == '\0')
            return "it ends with a lone %";
    }
    return NULL;
}

/* strptime over `len` bytes of `format` (which need not end there). */
static const char *s_strptime_n(const char *text, const char *format, size_t len, struct tm *tm)
{
    char part[256];
    if (len >= sizeof part)
        return NULL;
    memcpy(part, format, len);
    part[len] = '\0';
    return len ? strptime(text, part, tm) : text;
}

int csv_time_strptime(const char *text, const char *format, int64_t *ns)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_mday = 1; /* a format without a day means the first */
    tm.tm_year = 70;
    int64_t frac = 0;
    const char *f = strstr(format, "%f");
    const char *p = s_strptime_n(text, format, f ? (size_t)(f - format) : strlen(format), &tm);
    if (!p)
        return -1;
    if (f) {
        if ((*p == '.' || *p == ',') && p[1] >= '0' && p[1] <= '9') {
            int64_t weight = S_NS;
            for (p++; *p >= '0' && *p <= '9'; p++) {
                weight /= 10;
                frac += (*p - '0') * weight;
            }
        }
        p = s_strptime_n(p, f + 2, strlen(f + 2), &tm);
        if (!p)
            return -1;
    }
    if (*p != '\0')
        return -1;
    /* strptime checks each field's range, not the day against the month. */
    int64_t year = (int64_t)tm.tm_year + 1900;
    unsigned mon = (unsigned)tm.tm_mon + 1;
    if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || year < 1 || year > 9999)
        return -1;
    int64_t days = ewp_days_from_civil(year, mon, (unsigned)tm.tm_mday);
    int64_t next = mon == 12 ? ewp_days_from_civil(year + 1, 1, 1)
                             : ewp_days_from_civil(year, mon + 1, 1);
    if (days >= next)
        return -1;
    int64_t secs = days * 86400 + (int64_t)tm.tm_hour * 3600 + (int64_t)tm.tm_min * 60 + tm.tm_sec - tm.tm_gmtoff;
    int64_t v;
    if (__builtin_mul_overflow(secs, S_NS, &v) || __builtin_add_overflow(v, frac, &v))
        return -1;
    *ns = v;
    return 0;
}
