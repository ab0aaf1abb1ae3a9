/* tempfiles: the temporary files and folders the harnesses hand their input in. */
#include "tempfiles.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void s_write_all(int fd, const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
}

int fuzz_temp_file(const char *tag, const uint8_t *data, size_t size, char *path, size_t len)
{
    if (snprintf(path, len, "/tmp/ew-fuzz-%s-XXXXXX", tag) >= (int)len)
        return -1;
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    s_write_all(fd, data, size);
    close(fd);
    return 0;
}

void fuzz_write(const char *dir, const char *name, const uint8_t *data, size_t size)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (f) {
        fwrite(data, 1, size, f);
        fclose(f);
    }
}

void fuzz_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}
