/* csv_time: the timestamp forms the csv source reads besides ISO-8601 (which
 * ewp_time parses): epoch numbers in a given unit, and strptime-style formats. */
#ifndef CSV_TIME_H
#define CSV_TIME_H

#include <stdbool.h>
#include <stdint.h>

/* Parses "[+-]digits[.digits]" as a count of units of `unit_ns` nanoseconds
 * (1e9 = seconds ... 1 = nanoseconds) since the Unix epoch, exactly (no binary
 * floating point). Fraction digits finer than a nanosecond are dropped, as
 * ISO-8601 timestamps' are. Returns 0 and sets *ns, or -1 when the text is not
 * such a number or lies outside the int64 nanosecond range. */
int csv_time_epoch(const char *text, int64_t unit_ns, int64_t *ns);

/* Whether `text` looks like an epoch number ("[+-]digits[.digits]"), and the
 * unit its magnitude suggests: fewer than 12 integer digits = seconds (until
 * year 5138), 12-14 = milliseconds, 15-17 = microseconds, more = nanoseconds. */
bool csv_time_epoch_guess(const char *text, int64_t *unit_ns);

/* Checks a strptime-style format for the csv source: it must contain a %
 * conversion, and not %s (which glibc reads as local time; epoch_s does it
 * right). Returns NULL, or why not. */
const char *csv_time_format_check(const char *format);

/* Parses `text` with a strptime format, plus %f: an optional fraction of a
 * second (".25", ",5", up to nanoseconds, more digits dropped) and %z for a
 * UTC offset; without %z the time is UTC. The whole text must match. Returns 0
 * and sets *ns, or -1. */
int csv_time_strptime(const char *text, const char *format, int64_t *ns);

#endif
