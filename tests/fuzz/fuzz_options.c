/* fuzz_options: option values of every type, and a whole table filled from key=value lines. */
#include "options.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct s_cfg {
    const char *s;
    int64_t i;
    double d;
    bool b;
    int e;
    int64_t dur;
    uint64_t sz;
    ew_list list;
    ew_kvlist map;
} s_cfg;

static const ew_option s_table[] = {
    EW_OPTION("s", EW_OPT_STRING, "x", s_cfg, s, "string"),
    EW_OPTION_RANGE("i", EW_OPT_INT, "1", -5, 5000, s_cfg, i, "int"),
    EW_OPTION_RANGE("d", EW_OPT_DOUBLE, "0.5", -1, 1, s_cfg, d, "double"),
    EW_OPTION("b", EW_OPT_BOOL, "true", s_cfg, b, "bool"),
    EW_OPTION_ENUM("e", "a", "a|bb|ccc", s_cfg, e, "enum"),
    EW_OPTION_RANGE("dur", EW_OPT_DURATION, "1s", 0, 3600, s_cfg, dur, "duration"),
    EW_OPTION("sz", EW_OPT_SIZE, "1KiB", s_cfg, sz, "size"),
    EW_OPTION_RANGE("list", EW_OPT_LIST, "a, b", 0, 64, s_cfg, list, "list"),
    {.name = "map.", .type = EW_OPT_PREFIX, .offset = offsetof(s_cfg, map), .description = "map"},
    EW_OPTION_END,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    int64_t i;
    uint64_t u;
    double d;
    bool b;
    options_parse_int(text, &i);
    options_parse_double(text, &d);
    options_parse_bool(text, &b);
    options_parse_duration(text, &i);
    options_parse_size(text, &u);
    /* Lines "key=value" become the kv rows of one section. */
    options_kv kvs[32];
    size_t n = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line && n < 32;
         line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        kvs[n] = (options_kv){line, eq + 1, (int)n + 1};
        n++;
    }
    s_cfg cfg;
    options_mem mem = {0};
    options_error err = {0};
    options_fill(s_table, sizeof cfg, kvs, n, &cfg, &mem, &err);
    options_mem_free(&mem);
    free(text);
    return 0;
}
