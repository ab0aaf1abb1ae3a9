/* state: per-node state files, saved atomically with a checksummed header, verified on load. */
#include "state.h"

#include <edgewatch/bytes.h>
#include <edgewatch/plugin.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static const char s_magic[8] = {'E', 'W', 'S', 'T', 'A', 'T', 'E', '\0'};

/* Offsets of the header fields, as documented in state.h. */
enum {
    S_OFF_MAGIC = 0,
    S_OFF_VERSION = 8,
    S_OFF_HEADER_SIZE = 12,
    S_OFF_LENGTH = 16,
    S_OFF_PAYLOAD_CRC = 24,
    S_OFF_HEADER_CRC = 28,
    S_OFF_PLUGIN = 32,
    S_PLUGIN_FIELD = 32,
};

/* A payload larger than this is refused on save and treated as corrupt on load,
 * so a damaged length field can never make us allocate the machine's memory. */
#define S_PAYLOAD_MAX ((uint64_t)1 << 30)
#define S_NAME_MAX 64

static void s_err(char *err, size_t errlen, const char *fmt, ...) EW_PRINTF(3, 4);
static void s_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* zlib's crc32() takes a uInt length, so feed large buffers in pieces. */
static uint32_t s_crc32(const void *data, size_t len)
{
    const unsigned char *p = data;
    uLong crc = crc32(0L, Z_NULL, 0);
    while (len > 0) {
        uInt chunk = len > (1u << 30) ? (1u << 30) : (uInt)len;
        crc = crc32(crc, p, chunk);
        p += chunk;
        len -= chunk;
    }
    return (uint32_t)crc;
}

int state_name_valid(const char *file)
{
    if (!file || file[0] == '\0' || file[0] == '.')
        return 0;
    size_t n = 0;
    for (const char *p = file; *p; p++, n++) {
        char c = *p;
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '.' || c == '-';
        if (!ok || n >= S_NAME_MAX)
            return 0;
    }
    return 1;
}

/* Joins dir and name without doubling a slash; returns -1 when it does not fit. */
static int s_join(char *out, size_t outlen, const char *dir, const char *name)
{
    size_t dlen = strlen(dir);
    while (dlen > 1 && dir[dlen - 1] == '/')
        dlen--;
    const char *sep = (dlen > 0 && dir[dlen - 1] == '/') ? "" : "/";
    int n = snprintf(out, outlen, "%.*s%s%s", (int)dlen, dir, sep, name);
    return (n < 0 || (size_t)n >= outlen) ? -1 : 0;
}

/* ---- state_prepare_dir --------------------------------------------------------------------- */

/* The advice every "cannot use the state folder" message ends with. */
static void s_err_unusable(char *err, size_t errlen, const char *state_dir, const char *what,
                           const char *path, int errnum)
{
    s_err(err, errlen,
          "state folder %s %s (%s): make %s writable by uid %u or set state_dir in [pipeline]",
          path, what, strerror(errnum), state_dir, (unsigned)geteuid());
}

/* mkdir -p: creates every missing component of path with mode 0750. */
static int s_mkdir_p(const char *state_dir, const char *path, char *err, size_t errlen)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len >= sizeof buf) {
        s_err(err, errlen,
              "state folder path is too long (%zu bytes): set a shorter state_dir in [pipeline]",
              len);
        return -1;
    }
    memcpy(buf, path, len + 1);
    /* Walk each prefix that ends just before a '/', then the whole path. */
    for (size_t i = 1; i <= len; i++) {
        if (i < len && buf[i] != '/')
            continue;
        if (i < len && buf[i - 1] == '/')
            continue; /* "a//b": the prefix was already handled */
        char saved = buf[i];
        buf[i] = '\0';
        int rc = mkdir(buf, 0750);
        int mkdir_errno = errno;
        struct stat st;
        if (rc != 0 && mkdir_errno == EEXIST) {
            /* stat follows symlinks: a link to a folder is a folder. */
            if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
                s_err(err, errlen,
                      "%s exists but is not a folder: remove it or set state_dir in [pipeline] "
                      "to a folder",
                      buf);
                return -1;
            }
        } else if (rc != 0 && mkdir_errno == ENOTDIR) {
            s_err(err, errlen,
                  "cannot create state folder %s: a part of that path is a file, not a folder; "
                  "set state_dir in [pipeline] to a folder",
                  buf);
            return -1;
        } else if (rc != 0 &&
                   (mkdir_errno == EACCES || mkdir_errno == EPERM || mkdir_errno == EROFS)) {
            s_err_unusable(err, errlen, state_dir, "cannot be created", buf, mkdir_errno);
            return -1;
        } else if (rc != 0) {
            s_err(err, errlen, "cannot create state folder %s: %s", buf, strerror(mkdir_errno));
            return -1;
        }
        buf[i] = saved;
    }
    return 0;
}

/* Proves the folder is usable by creating and removing a file. access() answers
 * from permissions alone (and always yes to root on a writable mount); a full
 * volume, exhausted inodes, quotas or a check done by an NFS or FUSE server only
 * show up when a file is actually created. */
static int s_probe_writable(const char *state_dir, const char *path, char *err, size_t errlen)
{
    if (access(path, W_OK | X_OK) != 0) {
        s_err_unusable(err, errlen, state_dir, "is not writable", path, errno);
        return -1;
    }
    char probe[4096];
    if (s_join(probe, sizeof probe, path, ".probe-XXXXXX") != 0) {
        s_err(err, errlen,
              "state folder path %s is too long: set a shorter state_dir in [pipeline]", path);
        return -1;
    }
    int fd = mkostemp(probe, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOSPC || e == EDQUOT)
            s_err(err, errlen, "state folder %s is full (%s): free space on that volume", path,
                  strerror(e));
        else
            s_err_unusable(err, errlen, state_dir, "is not writable", path, e);
        return -1;
    }
    close(fd);
    unlink(probe);
    return 0;
}

/* Removes ".NAME.tmp-XXXXXX" files that a crash in the middle of state_save left
 * behind: the file they were meant to replace is intact, so they are garbage. */
static void s_remove_stale_temporaries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const char *name = e->d_name;
        size_t len = strlen(name);
        const char *mark = len > 12 ? name + len - 11 : NULL;
        if (name[0] != '.' || !mark || strncmp(mark, ".tmp-", 5) != 0)
            continue;
        char path[4096];
        if (s_join(path, sizeof path, dir, name) == 0)
            unlink(path);
    }
    closedir(d);
}

int state_prepare_dir(const char *state_dir, const char *node, char *out, size_t outlen, char *err,
                      size_t errlen)
{
    if (!state_dir || state_dir[0] == '\0') {
        s_err(err, errlen, "state_dir is empty: set state_dir in [pipeline]");
        return -1;
    }
    if (!out || outlen == 0) {
        s_err(err, errlen, "state_prepare_dir: no output buffer");
        return -1;
    }
    /* The node name becomes a path component, so it must not climb out of state_dir. */
    if (node && node[0] != '\0' && !state_name_valid(node)) {
        s_err(err, errlen,
              "node name '%s' cannot be used as a state folder name: use letters, digits, "
              "'_', '-' or '.', not starting with '.'",
              node);
        return -1;
    }
    int rc;
    if (node && node[0] != '\0') {
        rc = s_join(out, outlen, state_dir, node);
    } else {
        int n = snprintf(out, outlen, "%s", state_dir);
        rc = (n < 0 || (size_t)n >= outlen) ? -1 : 0;
    }
    if (rc != 0) {
        s_err(err, errlen,
              "state folder path under %s is too long: set a shorter state_dir in [pipeline]",
              state_dir);
        out[0] = '\0';
        return -1;
    }
    if (s_mkdir_p(state_dir, out, err, errlen) != 0)
        return -1;
    if (s_probe_writable(state_dir, out, err, errlen) != 0)
        return -1;
    s_remove_stale_temporaries(out);
    return 0;
}

/* ---- state_save ---------------------------------------------------------------------------- */

static int s_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Makes a rename in dir durable: without it a power cut can bring back the old name. */
static int s_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    /* Some file systems cannot fsync a folder; the data itself is already safe. */
    if (rc != 0 && (errno == EINVAL || errno == EROFS))
        rc = 0;
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

static void s_build_header(unsigned char *h, const char *plugin, size_t len, uint32_t payload_crc)
{
    memset(h, 0, STATE_HEADER_SIZE);
    memcpy(h + S_OFF_MAGIC, s_magic, sizeof s_magic);
    ew_le_put32(h + S_OFF_VERSION, STATE_FORMAT_VERSION);
    ew_le_put32(h + S_OFF_HEADER_SIZE, STATE_HEADER_SIZE);
    ew_le_put64(h + S_OFF_LENGTH, (uint64_t)len);
    ew_le_put32(h + S_OFF_PAYLOAD_CRC, payload_crc);
    ew_le_put32(h + S_OFF_HEADER_CRC, s_crc32(h, S_OFF_HEADER_CRC));
    memcpy(h + S_OFF_PLUGIN, plugin, strlen(plugin));
}

int state_save(const char *dir, const char *file, const char *plugin, const void *data, size_t len,
               char *err, size_t errlen)
{
    if (!dir || !state_name_valid(file)) {
        s_err(err, errlen,
              "invalid state file name '%s': use 1 to %d letters, digits, '_', '-' or '.', not "
              "starting with '.'",
              file ? file : "(null)", S_NAME_MAX);
        return -1;
    }
    if (!plugin || plugin[0] == '\0' || strlen(plugin) > S_PLUGIN_FIELD) {
        s_err(err, errlen, "cannot save state file %s: plugin name must be 1 to %d characters",
              file, S_PLUGIN_FIELD);
        return -1;
    }
    if (len > 0 && !data) {
        s_err(err, errlen, "cannot save state file %s: no data", file);
        return -1;
    }
    if ((uint64_t)len > S_PAYLOAD_MAX) {
        s_err(err, errlen, "cannot save state file %s: %zu bytes is over the 1 GiB limit", file,
              len);
        return -1;
    }
    char path[4096], tmp[4096];
    if (s_join(path, sizeof path, dir, file) != 0) {
        s_err(err, errlen, "cannot save state file %s: path too long", file);
        return -1;
    }
    /* The temporary name starts with '.', which state_name_valid refuses, so it can
     * never collide with a real state file; it sits in the same folder so that the
     * rename is atomic. */
    char tmpname[S_NAME_MAX + 16];
    snprintf(tmpname, sizeof tmpname, ".%s.tmp-XXXXXX", file);
    if (s_join(tmp, sizeof tmp, dir, tmpname) != 0) {
        s_err(err, errlen, "cannot save state file %s: path too long", file);
        return -1;
    }

    unsigned char header[STATE_HEADER_SIZE];
    s_build_header(header, plugin, len, s_crc32(data ? data : "", len));

    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        s_err(err, errlen, "cannot save state file %s: cannot create a temporary file in %s: %s",
              path, dir, strerror(errno));
        return -1;
    }
    const char *step = "write";
    if (s_write_all(fd, header, sizeof header) != 0 || s_write_all(fd, data, len) != 0)
        goto fail;
    step = "fsync";
    if (fsync(fd) != 0)
        goto fail;
    step = "close";
    /* close can report a delayed write error (NFS); the file must not be trusted then. */
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    step = "rename";
    if (rename(tmp, path) != 0)
        goto fail;
    if (s_fsync_dir(dir) != 0) {
        s_err(err, errlen, "saved state file %s but could not fsync its folder: %s", path,
              strerror(errno));
        return -1;
    }
    return 0;

fail:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    s_err(err, errlen, "cannot save state file %s (%s failed): %s%s", path, step, strerror(e),
          (e == ENOSPC || e == EDQUOT) ? ": free space on the state volume" : "");
    return -1;
}

/* ---- state_load ---------------------------------------------------------------------------- */

static int s_read_full(int fd, void *buf, size_t len, size_t *got)
{
    char *p = buf;
    *got = 0;
    while (*got < len) {
        ssize_t n = read(fd, p + *got, len - *got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        *got += (size_t)n;
    }
    return 0;
}

/* Renames a file that failed its check to FILE.corrupt-YYYYmmddTHHMMSSZ, keeping
 * it for inspection. Never overwrites an earlier corrupt copy: a second one within
 * the same second gets a ".N" suffix. Writes the new path into aside. */
static int s_move_aside(const char *dir, const char *path, char *aside, size_t asidelen)
{
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    if (!gmtime_r(&now, &tm) || strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm) == 0)
        snprintf(stamp, sizeof stamp, "unknown-time");
    for (int attempt = 0; attempt < 100; attempt++) {
        int n = attempt == 0 ? snprintf(aside, asidelen, "%s.corrupt-%s", path, stamp)
                             : snprintf(aside, asidelen, "%s.corrupt-%s.%d", path, stamp, attempt);
        if (n < 0 || (size_t)n >= asidelen) {
            errno = ENAMETOOLONG;
            return -1;
        }
        if (renameat2(AT_FDCWD, path, AT_FDCWD, aside, RENAME_NOREPLACE) == 0) {
            s_fsync_dir(dir);
            return 0;
        }
        if (errno == EEXIST)
            continue;
        if (errno == EINVAL || errno == ENOSYS) {
            /* The file system cannot refuse to replace; check first (a race here only
             * loses an older corrupt copy, never good state). */
            if (access(aside, F_OK) == 0)
                continue;
            if (rename(path, aside) == 0) {
                s_fsync_dir(dir);
                return 0;
            }
        }
        return -1;
    }
    errno = EEXIST;
    return -1;
}

int state_load(const char *dir, const char *file, const char *plugin, void **data, size_t *len,
               int *moved_aside, char *err, size_t errlen)
{
    if (moved_aside)
        *moved_aside = 0;
    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    if (!dir || !data || !len || !plugin) {
        s_err(err, errlen, "state_load: missing argument");
        return -1;
    }
    if (!state_name_valid(file)) {
        s_err(err, errlen,
              "invalid state file name '%s': use 1 to %d letters, digits, '_', '-' or '.', not "
              "starting with '.'",
              file ? file : "(null)", S_NAME_MAX);
        return -1;
    }
    char path[4096];
    if (s_join(path, sizeof path, dir, file) != 0) {
        s_err(err, errlen, "cannot load state file %s: path too long", file);
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return EW_ENOENT;
        s_err(err, errlen, "cannot open state file %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        s_err(err, errlen, "cannot stat state file %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        /* Not something we wrote: leave it where it is and let a person look. */
        s_err(err, errlen, "state file %s is not a regular file: remove it", path);
        close(fd);
        return -1;
    }

    char why[256] = "";
    unsigned char h[STATE_HEADER_SIZE];
    unsigned char *payload = NULL;
    uint64_t file_size = (uint64_t)st.st_size;
    uint64_t length = 0;
    size_t got = 0;
    if (s_read_full(fd, h, sizeof h, &got) != 0)
        goto io_error;
    if (got < sizeof h) {
        snprintf(why, sizeof why, "truncated: %zu bytes, shorter than the %d-byte header", got,
                 STATE_HEADER_SIZE);
        goto corrupt;
    }
    if (memcmp(h + S_OFF_MAGIC, s_magic, sizeof s_magic) != 0) {
        snprintf(why, sizeof why, "not an edgewatch state file (bad magic)");
        goto corrupt;
    }
    if (ew_le_get32(h + S_OFF_HEADER_CRC) != s_crc32(h, S_OFF_HEADER_CRC)) {
        snprintf(why, sizeof why, "header checksum mismatch");
        goto corrupt;
    }
    uint32_t version = ew_le_get32(h + S_OFF_VERSION);
    if (version != STATE_FORMAT_VERSION) {
        snprintf(why, sizeof why, "format version %u, this edgewatch reads version %u",
                 (unsigned)version, STATE_FORMAT_VERSION);
        goto corrupt;
    }
    if (ew_le_get32(h + S_OFF_HEADER_SIZE) != STATE_HEADER_SIZE) {
        snprintf(why, sizeof why, "header size %u, expected %d",
                 (unsigned)ew_le_get32(h + S_OFF_HEADER_SIZE), STATE_HEADER_SIZE);
        goto corrupt;
    }
    /* The plugin field is outside the header CRC, so compare all 32 bytes, padding
     * included: any flipped byte there shows up as a mismatch. */
    char expect[S_PLUGIN_FIELD] = {0};
    memcpy(expect, plugin, strnlen(plugin, S_PLUGIN_FIELD));
    if (memcmp(h + S_OFF_PLUGIN, expect, S_PLUGIN_FIELD) != 0) {
        char found[S_PLUGIN_FIELD + 1];
        memcpy(found, h + S_OFF_PLUGIN, S_PLUGIN_FIELD);
        found[S_PLUGIN_FIELD] = '\0';
        for (char *p = found; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
                *p = '?';
        if (strncmp(found, plugin, S_PLUGIN_FIELD) == 0)
            snprintf(why, sizeof why, "plugin name field damaged (non-zero padding)");
        else
            snprintf(why, sizeof why, "written by plugin '%s', expected '%.32s'", found, plugin);
        goto corrupt;
    }
    length = ew_le_get64(h + S_OFF_LENGTH);
    /* Trust the length only after checking it against the file actually on disk
     * and the cap: a damaged field must not turn into a giant malloc. */
    if (length > S_PAYLOAD_MAX) {
        snprintf(why, sizeof why, "payload length %llu is over the 1 GiB limit",
                 (unsigned long long)length);
        goto corrupt;
    }
    if (length != file_size - STATE_HEADER_SIZE) {
        snprintf(why, sizeof why, "header says %llu payload bytes, file has %llu",
                 (unsigned long long)length, (unsigned long long)(file_size - STATE_HEADER_SIZE));
        goto corrupt;
    }
    payload = malloc(length ? (size_t)length : 1);
    if (!payload) {
        s_err(err, errlen, "cannot load state file %s: out of memory for %llu bytes", path,
              (unsigned long long)length);
        close(fd);
        return -1;
    }
    if (s_read_full(fd, payload, (size_t)length, &got) != 0)
        goto io_error;
    if (got != length) {
        snprintf(why, sizeof why, "truncated while reading: %zu of %llu payload bytes", got,
                 (unsigned long long)length);
        goto corrupt;
    }
    if (ew_le_get32(h + S_OFF_PAYLOAD_CRC) != s_crc32(payload, (size_t)length)) {
        snprintf(why, sizeof why, "payload checksum mismatch");
        goto corrupt;
    }
    close(fd);
    *data = payload;
    *len = (size_t)length;
    return 0;

io_error:;
    int e = errno;
    free(payload);
    close(fd);
    s_err(err, errlen, "cannot read state file %s: %s", path, strerror(e));
    return -1;

corrupt:
    free(payload);
    close(fd);
    char aside[4096 + 64];
    if (s_move_aside(dir, path, aside, sizeof aside) != 0) {
        s_err(err, errlen,
              "state file %s is corrupt (%s) and could not be moved aside (%s): move or remove "
              "it by hand",
              path, why, strerror(errno));
        return -1;
    }
    if (moved_aside)
        *moved_aside = 1;
    s_err(err, errlen, "state file %s is corrupt (%s): moved aside to %s", path, why, aside);
    return EW_ENOENT;
}

/* ---- instance lock and clean-stop marker ---------------------------------------------------- */

#define S_LOCK_FILE ".lock"
#define S_MARK_FILE ".running"

/* Takes a write lock on the whole of fd without waiting: 0, or -1 with errno
 * (EAGAIN/EACCES when held elsewhere). An open-file-description lock belongs to
 * this fd only, so a plugin that opens and closes the same file cannot drop it as
 * it would a classic POSIX record lock; kernels without it get the classic one. */
static int s_try_lock(int fd)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
#ifdef F_OFD_SETLK
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
        return 0;
    if (errno != EINVAL)
        return -1;
#endif
    return fcntl(fd, F_SETLK, &fl);
}

/* Reads up to len-1 bytes of a small file into buf, cut at the first newline. */
static void s_read_small(int fd, char *buf, size_t len)
{
    ssize_t n = pread(fd, buf, len - 1, 0);
    buf[n > 0 ? (size_t)n : 0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
}

int state_lock(const char *state_dir, char *err, size_t errlen)
{
    char path[4096];
    if (s_mkdir_p(state_dir, state_dir, err, errlen) < 0)
        return STATE_LOCK_NONE;
    if (s_join(path, sizeof path, state_dir, S_LOCK_FILE) < 0) {
        s_err(err, errlen, "state folder path %s is too long", state_dir);
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        int e = errno;
        if (e == EACCES || e == EPERM || e == EROFS || e == ENOSPC || e == EDQUOT) {
            s_err(err, errlen, "cannot create the instance lock %s: %s", path, strerror(e));
            return STATE_LOCK_NONE;
        }
        s_err(err, errlen, "cannot open the instance lock %s: %s", path, strerror(e));
        return -1;
    }
    if (s_try_lock(fd) < 0) {
        int e = errno;
        if (e == EAGAIN || e == EACCES) {
            char holder[64];
            s_read_small(fd, holder, sizeof holder);
            s_err(err, errlen,
                  "state folder %s is in use by another edgewatch (pid %s, per %s): two instances "
                  "on one state folder would share node state and the mqtt spool and lose messages; "
                  "stop that one first, or give this one its own state_dir in [pipeline]",
                  state_dir, holder[0] ? holder : "unknown", path);
            close(fd);
            return STATE_LOCK_BUSY;
        }
        s_err(err, errlen, "cannot lock %s: %s", path, strerror(e));
        close(fd);
        return -1;
    }
    /* The pid is for the message above only; the lock itself is what counts. */
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        /* Held all the same: only the message of a second instance loses the pid. */
    }
    return fd;
}

int state_mark_running(const char *state_dir, char *previous, size_t prevlen, char *err,
                       size_t errlen)
{
    char path[4096];
    previous[0] = '\0';
    if (s_join(path, sizeof path, state_dir, S_MARK_FILE) < 0) {
        s_err(err, errlen, "state folder path %s is too long", state_dir);
        return -1;
    }
    int found = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
        s_read_small(fd, previous, prevlen);
        close(fd);
        found = 1;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        s_err(err, errlen, "cannot write the clean-stop marker %s: %s", path, strerror(errno));
        return found ? 1 : -1;
    }
    char line[128], when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int n = snprintf(line, sizeof line, "pid %ld started %s\n", (long)getpid(), when);
    /* fsync'd: after a power cut the marker must be there to be noticed. */
    if (s_write_all(fd, line, (size_t)n) < 0 || fsync(fd) < 0) {
        s_err(err, errlen, "cannot write the clean-stop marker %s: %s", path, strerror(errno));
        close(fd);
        return found ? 1 : -1;
    }
    close(fd);
    s_fsync_dir(state_dir);
    return found;
}

void state_mark_stopped(const char *state_dir)
{
    char path[4096];
    if (s_join(path, sizeof path, state_dir, S_MARK_FILE) == 0 && unlink(path) == 0)
        s_fsync_dir(state_dir);
}
