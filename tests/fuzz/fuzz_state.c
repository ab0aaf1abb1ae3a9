/* fuzz_state: state files of arbitrary content, loaded as a node would at start. */
#include "state.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[] = "/tmp/ew-fuzz-state-XXXXXX";
    if (!mkdtemp(dir))
        return 0;
    char path[sizeof dir + 300];
    snprintf(path, sizeof path, "%s/model.bin", dir);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, size, f);
        fclose(f);
        void *payload = NULL;
        size_t len = 0;
        int moved = 0;
        char err[400];
        if (state_load(dir, "model.bin", "fuzz", &payload, &len, &moved, err, sizeof err) == 0)
            free(payload);
    }
    /* Whatever happened (loaded, moved aside), leave nothing behind. */
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    if (d)
        closedir(d);
    rmdir(dir);
    return 0;
}
