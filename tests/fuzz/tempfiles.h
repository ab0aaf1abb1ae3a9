/* tempfiles: the temporary files and folders the harnesses hand their input in. */
#ifndef FUZZ_TEMPFILES_H
#define FUZZ_TEMPFILES_H

#include <stddef.h>
#include <stdint.h>

/* Writes data to a new file /tmp/ew-fuzz-<tag>-XXXXXX, whose name goes to
 * path (at least 64 bytes); returns 0, or -1 when it cannot be created. */
int fuzz_temp_file(const char *tag, const uint8_t *data, size_t size, char *path, size_t len);

/* Writes data as dir/name (best effort: a harness then sees a shorter file). */
void fuzz_write(const char *dir, const char *name, const uint8_t *data, size_t size);

/* Removes the files of one folder level, then the folder. */
void fuzz_rmdir(const char *dir);

#endif
