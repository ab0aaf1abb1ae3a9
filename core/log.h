/* log: one line per event to stderr, as text or JSON, filtered by level. */
#ifndef EW_CORE_LOG_H
#define EW_CORE_LOG_H

#include <edgewatch/plugin.h>

typedef enum log_format {
    LOG_FORMAT_TEXT = 0, /* 2026-11-26T16:35:03.123Z WARN  [pump_z] message */
    LOG_FORMAT_JSON = 1, /* {"ts":"...","level":"warn","node":"pump_z","msg":"..."} */
} log_format;

/* Where and how lines go. Owned by main and passed by pointer; read-only once
 * threads run, so every thread may log through it concurrently. */
typedef struct logger {
    ew_log_level level; /* lines above this level are discarded */
    log_format format;
    int fd;             /* usually 2 (stderr) */
} logger;

/* A logger writing text at info level to stderr. */
logger log_default(void);

/* Parses "error|warn|info|debug"; returns 0 or -1. */
int log_parse_level(const char *text, ew_log_level *out);
/* Parses "text|json"; returns 0 or -1. */
int log_parse_format(const char *text, log_format *out);
/* Lower-case name of a level ("warn"). */
const char *log_level_name(ew_log_level level);

/* Writes one line atomically (a single write(2)); `node` may be NULL. Never fails
 * loudly: a line that cannot be written is dropped. Lines are cut at 4 KiB. */
void log_write(const logger *lg, ew_log_level level, const char *node, const char *fmt, ...)
    EW_PRINTF(4, 5);
void log_vwrite(const logger *lg, ew_log_level level, const char *node, const char *fmt, va_list ap)
    EW_PRINTF(4, 0);

#endif
