/* fuzz_config: the INI reader, ${VAR} expansion and graph validation on arbitrary text. */
#include "config.h"
#include "graph.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Variables the inputs may reference; set every time, harmless to repeat. */
    setenv("EW_FUZZ_SET", "value", 1);
    setenv("EW_FUZZ_EMPTY", "", 1);
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    config cfg;
    config_error err = {0};
    if (config_load_string("fuzz.ini", text, &cfg, &err) == 0) {
        graph g;
        if (graph_build(&cfg, &g, &err) == 0)
            graph_free(&g);
        config_free(&cfg);
    }
    char line[1600];
    config_error_format("fuzz.ini", &err, line, sizeof line);
    char experr[300];
    free(config_expand(text, experr, sizeof experr));
    free(text);
    return 0;
}
