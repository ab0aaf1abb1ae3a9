/* options: parses and validates a node's INI keys against a plugin's option
 * table and fills the plugin's config struct. The same table drives
 * `edgewatch describe` and the generated configuration reference. */
#ifndef EW_CORE_OPTIONS_H
#define EW_CORE_OPTIONS_H

#include <edgewatch/plugin.h>
#include <stdio.h>

/* One key = value as read from a section, with its line for messages. */
typedef struct options_kv {
    const char *key;
    const char *value;
    int line;
} options_kv;

/* Memory owned for strings and lists placed into a config struct. */
typedef struct options_mem {
    void **blocks;
    size_t count, cap;
} options_mem;

/* Where an error was found: the line (0 = the section as a whole) and the key. */
typedef struct options_error {
    int line;
    char key[64];
    char message[512];
} options_error;

/* Checks a plugin's table: names valid and unique, known types, enum choices
 * present, defaults parse, offsets inside config_size. Returns 0 or -1 with err. */
int options_check_table(const ew_option *table, size_t config_size, char *err, size_t errlen);

/* Zeroes `config`, applies defaults, then every kv; unknown key, bad value, out of
 * range, missing required: -1 with *err filled (line and key). */
int options_fill(const ew_option *table, size_t config_size, const options_kv *kvs, size_t count,
                 void *config, options_mem *mem, options_error *err);

/* Frees what options_fill allocated into `mem`. */
void options_mem_free(options_mem *mem);

/* Parses one value of `type` into `out` (storage as documented in plugin.h).
 * Used by options_fill and by the host for its own [pipeline] settings. */
int options_parse_duration(const char *text, int64_t *ns);
int options_parse_size(const char *text, uint64_t *bytes);
int options_parse_bool(const char *text, bool *out);
int options_parse_int(const char *text, int64_t *out);
int options_parse_double(const char *text, double *out);

/* Name of a type as shown to users ("duration"). */
const char *options_type_name(ew_opt_type type);

/* Prints the table as `edgewatch describe` shows it (markdown = 0) or as a
 * markdown table for docs (markdown = 1). */
void options_describe(const ew_option *table, FILE *out, int markdown);

#endif
