/* state: per-node state files, written atomically and checked on load.
 *
 * Layout of a file: a 64-byte header then the payload.
 *   magic "EWSTATE\0" (8) | format version u32 LE (4) | header size u32 LE (4)
 *   payload length u64 LE (8) | CRC-32 of payload u32 LE (4) | CRC-32 of the header
 *   bytes before it u32 LE (4) | plugin name, NUL-padded (32)
 * A write goes to a temporary file in the same folder, is fsync'ed, renamed over
 * the old file, and the folder is fsync'ed: a crash leaves the old or the new file.
 */
#ifndef EW_CORE_STATE_H
#define EW_CORE_STATE_H

#include <stddef.h>

#define STATE_HEADER_SIZE 64
#define STATE_FORMAT_VERSION 1u

/* Whether `file` is an acceptable state file name: [A-Za-z0-9_.-]+, not starting
 * with '.', at most 64 characters. */
int state_name_valid(const char *file);

/* Makes `state_dir`/`node` (and state_dir itself) if missing, and checks that it
 * is a writable folder. Writes the folder path into `out`. Returns 0, or -1 with
 * a message in err saying what is wrong and what to do. */
int state_prepare_dir(const char *state_dir, const char *node, char *out, size_t outlen,
                      char *err, size_t errlen);

/* Atomically replaces `dir`/`file` with a header naming `plugin` and the payload.
 * Returns 0, or -1 with a message in err. */
int state_save(const char *dir, const char *file, const char *plugin, const void *data,
               size_t len, char *err, size_t errlen);

/* Loads `dir`/`file` into a malloc'd buffer (*data, *len; the caller frees).
 * Returns 0 on success; -4 (EW_ENOENT) when the file does not exist, or when it
 * failed its check (bad magic, version, plugin name, length or checksum): then it
 * was renamed to `file`.corrupt-<UTC time> and err says so and why (*moved_aside = 1);
 * -1 on an I/O error, with err. Payloads over 1 GiB are refused as corrupt. */
int state_load(const char *dir, const char *file, const char *plugin, void **data, size_t *len,
               int *moved_aside, char *err, size_t errlen);

/* The instance lock of a state folder: one running edgewatch per state_dir, since
 * two would share node state, the mqtt spool and its client id. An advisory
 * fcntl lock (open-file-description lock where the kernel has it) on
 * `state_dir`/.lock, held while the fd stays open (the process lifetime), so a
 * kill -9 or an OOM kill releases it. The file holds the holder's pid.
 * Returns the lock fd (>= 0; keep it open); STATE_LOCK_BUSY when another process
 * holds it (err names its pid); STATE_LOCK_NONE when the folder cannot be
 * created or written (err says why: nothing is kept there then, and the nodes
 * that need it report it themselves); -1 on another error, with err. */
enum { STATE_LOCK_BUSY = -2, STATE_LOCK_NONE = -3 };
int state_lock(const char *state_dir, char *err, size_t errlen);

/* The clean-stop marker `state_dir`/.running, written by the lock holder at start
 * and removed at a clean stop: its presence at start means the previous run was
 * killed (an OOM kill leaves no other trace), crashed or lost power.
 * state_mark_running returns 1 when a marker was already there, with what it held
 * (pid and start time) in `previous`; 0 when not; -1 when it cannot be written,
 * with err. */
int state_mark_running(const char *state_dir, char *previous, size_t prevlen, char *err,
                       size_t errlen);
/* Removes the marker (a clean stop). */
void state_mark_stopped(const char *state_dir);

#endif
