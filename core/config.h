/* config: reads the pipeline INI file (through inih) into sections of
 * key/value entries with their line numbers, expanding ${VAR} from the environment. */
#ifndef EW_CORE_CONFIG_H
#define EW_CORE_CONFIG_H

#include <stddef.h>
#include <stdio.h>

typedef struct config_entry {
    char *key;
    char *value; /* after ${VAR} expansion */
    int line;
} config_entry;

typedef struct config_section {
    char *name; /* as written: "pipeline", "source.pump" */
    int line;   /* line of the [header] */
    config_entry *entries;
    size_t count, cap;
} config_section;

typedef struct config {
    char *path; /* as given by the user, for messages */
    config_section *sections;
    size_t count, cap;
} config;

/* Where a configuration error is and what it is. line 0 = no particular line. */
typedef struct config_error {
    int line;
    char section[96];
    char key[64];
    char message[700];
} config_error;

/* Sets every field of an error at once. */
void config_error_set(config_error *err, int line, const char *section, const char *key,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Formats "PATH:LINE: [section] key: message" into out. */
void config_error_format(const char *path, const config_error *err, char *out, size_t outlen);

/* Reads and parses `path`. Returns 0, or -1 with err (syntax error, line too
 * long, key outside a section, duplicate section, unset variable, I/O error). */
int config_load(const char *path, config *cfg, config_error *err);

/* Parses configuration text held in memory; `path` is used in messages only. */
int config_load_string(const char *path, const char *text, config *cfg, config_error *err);

/* Expands ${VAR}, ${VAR:-default} and $$ in `in` into a malloc'd string. Returns
 * NULL with a message in err on an unset variable or a malformed reference. */
char *config_expand(const char *in, char *err, size_t errlen);

/* The section named `name`, or NULL. */
const config_section *config_find(const config *cfg, const char *name);
/* The entry `key` of a section, or NULL. */
const config_entry *config_get(const config_section *sec, const char *key);

void config_free(config *cfg);

#endif
