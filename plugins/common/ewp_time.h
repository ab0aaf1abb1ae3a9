/* ewp_time: UTC timestamps as int64 nanoseconds since the Unix epoch, parsed
 * from ISO-8601 / "YYYY-MM-DD HH:MM:SS" text and formatted as ISO-8601. */
#ifndef EWP_TIME_H
#define EWP_TIME_H

#include <stddef.h>
#include <stdint.h>

/* Buffer size for ewp_time_format: "2026-11-26T16:35:03.123456Z" and a NUL. */
#define EWP_TIME_BUFSIZE 28

/* Parses `len` bytes of text (no surrounding white space) as
 *   YYYY-MM-DD('T'|' ')HH:MM:SS[('.'|',')digits][Z | +HH:MM | -HH:MM | +HHMM | +HH]
 * A missing zone means UTC. Fraction digits beyond nanoseconds are truncated;
 * second 60 (a leap second) is taken as the first second of the next minute.
 * Returns 0 and sets *ns, or -1 when the text is not such a timestamp, names an
 * impossible date, or lies outside the int64 nanosecond range (1677..2262). */
int ewp_time_parse(const char *text, size_t len, int64_t *ns);

/* Writes `ns` as "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" (microseconds, rounded down)
 * into out[EWP_TIME_BUFSIZE]; returns the length (27). */
size_t ewp_time_format(int64_t ns, char *out);

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1..12). */
int64_t ewp_days_from_civil(int64_t y, unsigned m, unsigned d);

#endif
