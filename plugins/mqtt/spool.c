/* spool: segment files of checksummed records and a cursor; see spool.h for the contract. */
#include "spool.h"

#include <edgewatch/bytes.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define S_MAGIC 0x31535745u        /* "EWS1" little-endian */
#define S_CURSOR_MAGIC 0x43535745u /* "EWSC" */
#define S_HDR 24                   /* magic u32, len u32, seq u64, crc u32, reserved u32 */
#define S_MAX_RECORD (16u << 20)   /* larger lengths can only be garbage */

typedef struct s_seg {
    uint64_t first;   /* seq in the file name */
    uint64_t end;     /* seq after its last record */
    uint64_t bytes;   /* committed size */
} s_seg;

struct spool {
    pthread_mutex_t mu; /* guards everything below except the writer-only fields */
    char *dir;
    int dirfd;
    s_seg *segs; /* oldest first; the last is the one being written */
    size_t nsegs, capsegs;
    uint64_t max_bytes, seg_bytes, total_bytes;
    uint64_t acked; /* first unacknowledged seq */
    uint64_t min_next; /* open: the first seq a damaged tail cannot have held */
    int cfd;        /* cursor file */
    int64_t cursor_synced_ns;
    /* writer only */
    int wfd;
    bool rotate_next; /* the disk was full: start a new segment so that delivered ones can go */
    char *wbuf;
    size_t wcap;
    /* reader */
    int rfd;
    uint64_t rfirst; /* segment open in rfd, 0 = none */
    uint64_t roff, rseq;
    char *rbuf;
    size_t rcap;
};

static int64_t s_mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static uint32_t s_crc(uint64_t seq, const void *data, size_t len)
{
    unsigned char le[8];
    ew_le_put64(le, seq);
    uLong c = crc32(0L, Z_NULL, 0);
    c = crc32(c, le, 8);
    c = crc32(c, (const Bytef *)data, (uInt)len);
    return (uint32_t)c;
}

static void s_segname(char *out, size_t n, uint64_t first)
{
    snprintf(out, n, "seg-%016" PRIx64, first);
}

static bool s_grow(void **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 65536;
    while (c < need)
        c *= 2;
    void *b = realloc(*buf, c);
    if (!b)
        return false;
    *buf = b;
    *cap = c;
    return true;
}

static int s_push_seg(spool *sp, uint64_t first, uint64_t end, uint64_t bytes)
{
    if (sp->nsegs == sp->capsegs) {
        size_t c = sp->capsegs ? sp->capsegs * 2 : 16;
        s_seg *g = realloc(sp->segs, c * sizeof *g);
        if (!g)
            return -1;
        sp->segs = g;
        sp->capsegs = c;
    }
    sp->segs[sp->nsegs++] = (s_seg){first, end, bytes};
    sp->total_bytes += bytes;
    return 0;
}

static int s_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Whether a whole, intact record starts at off of the mapped segment m (size
 * bytes); its seq goes to *seq and its size (header and payload) to *len. */
static bool s_frame_at(const unsigned char *m, uint64_t size, uint64_t off, uint64_t *seq, uint64_t *len)
{
    if (size < S_HDR || off > size - S_HDR || ew_le_get32(m + off) != S_MAGIC)
        return false;
    uint32_t n = ew_le_get32(m + off + 4);
    if (n > S_MAX_RECORD || n > size - S_HDR - off)
        return false;
    uint64_t q = ew_le_get64(m + off + 8);
    if (s_crc(q, m + off + S_HDR, n) != ew_le_get32(m + off + 16))
        return false;
    *seq = q;
    *len = S_HDR + (uint64_t)n;
    return true;
}

/* The next offset after `from` where an intact record with a seq >= min_seq
 * starts, or size. The magic is searched first: a resync costs one pass. */
static uint64_t s_resync(const unsigned char *m, uint64_t size, uint64_t from, uint64_t min_seq)
{
    static const unsigned char magic[4] = {0x45, 0x57, 0x53, 0x31}; /* S_MAGIC little-endian */
    for (uint64_t off = from; off + S_HDR <= size;) {
        const unsigned char *hit = memmem(m + off, (size_t)(size - off), magic, 4);
        if (!hit)
            break;
        off = (uint64_t)(hit - m);
        uint64_t q, len;
        if (s_frame_at(m, size, off, &q, &len) && q >= min_seq)
            return off;
        off++;
    }
    return size;
}

/* Whether the bytes from off to the end are what a crash leaves: less than a
 * header, a record whose header is right but whose payload runs past the end
 * (the write was cut short), or zeros (the size grew before the data landed). */
static bool s_torn_tail(const unsigned char *m, uint64_t size, uint64_t off, uint64_t seq)
{
    if (size - off < S_HDR)
        return true;
    if (ew_le_get32(m + off) == S_MAGIC && ew_le_get64(m + off + 8) == seq &&
        ew_le_get32(m + off + 4) <= S_MAX_RECORD && S_HDR + (uint64_t)ew_le_get32(m + off + 4) > size - off)
        return true;
    for (uint64_t i = off; i < size; i++)
        if (m[i])
            return false;
    return true;
}

static void s_note_corrupt(spool_recovery *rec, const char *name, uint64_t from, uint64_t to, uint64_t seq_lo,
                           uint64_t seq_hi)
{
    rec->corrupt_stretches++;
    rec->corrupt_bytes += to - from;
    rec->lost_records += seq_hi - seq_lo;
    size_t used = strlen(rec->corrupt_where);
    size_t room = sizeof rec->corrupt_where - used;
    if (room <= 4)
        return;
    char one[160];
    if (seq_hi > seq_lo)
        snprintf(one, sizeof one, "%s%s bytes %" PRIu64 "-%" PRIu64 " (ids %" PRIu64 "-%" PRIu64 ")",
                 used ? ", " : "", name, from, to - 1, seq_lo, seq_hi - 1);
    else
        snprintf(one, sizeof one, "%s%s bytes %" PRIu64 "-%" PRIu64, used ? ", " : "", name, from, to - 1);
    if (strlen(one) < room)
        memcpy(rec->corrupt_where + used, one, strlen(one) + 1);
    else
        memcpy(rec->corrupt_where + used, ", ...", 6);
}

/* Writes the intact run m[from, to), whose first seq is seq0, as segment
 * seg-<seq0>: a temporary file, synced, renamed into place, the folder synced.
 * A rerun after a crash in the middle writes the same bytes again. */
static int s_write_run(spool *sp, const unsigned char *m, uint64_t from, uint64_t to, uint64_t seq0, char *err,
                       size_t errlen)
{
    char name[64], tmp[80];
    s_segname(name, sizeof name, seq0);
    snprintf(tmp, sizeof tmp, ".%s.tmp", name);
    int fd = openat(sp->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s/%s to keep the records after a damaged stretch: %s", sp->dir,
                 tmp, strerror(errno));
        return -1;
    }
    uint64_t done = from;
    while (done < to) {
        ssize_t w = write(fd, m + done, (size_t)(to - done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        done += (uint64_t)w;
    }
    if (done < to || fdatasync(fd) < 0 || close(fd) < 0) {
        int e = done < to && errno == 0 ? EIO : errno;
        if (done < to)
            close(fd);
        unlinkat(sp->dirfd, tmp, 0);
        snprintf(err, errlen, "cannot write %s/%s to keep the records after a damaged stretch: %s", sp->dir,
                 tmp, strerror(e));
        return -1;
    }
    if (renameat(sp->dirfd, tmp, sp->dirfd, name) < 0 || fsync(sp->dirfd) < 0) {
        snprintf(err, errlen, "cannot put %s/%s in place: %s", sp->dir, name, strerror(errno));
        unlinkat(sp->dirfd, tmp, 0);
        return -1;
    }
    return 0;
}

/* An intact run of records of one segment file. */
typedef struct s_run {
    uint64_t from, to;     /* bytes */
    uint64_t first, end;   /* seqs */
} s_run;

/* Checks every record of segment `first`. A torn record at its end is truncated
 * away. A damaged stretch is cut out: the scan resynchronises on the next intact
 * record and the runs after the damage become segments of their own (their
 * names are cleared from later[0..nlater) so the caller does not scan them twice
 * when a crash interrupted an earlier recovery). */
static int s_scan(spool *sp, uint64_t first, uint64_t *later, size_t nlater, spool_recovery *rec, char *err,
                  size_t errlen)
{
    char name[64];
    s_segname(name, sizeof name, first);
    int fd = openat(sp->dirfd, name, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open spool segment %s/%s: %s", sp->dir, name, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "cannot stat %s/%s: %s", sp->dir, name, strerror(errno));
        close(fd);
        return -1;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size == 0) {
        close(fd);
        return s_push_seg(sp, first, first, 0);
    }
    /* Mapped: a resync reads every byte of the damage, and nobody else writes the
     * folder (the host holds the state folder's lock). */
    const unsigned char *m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        snprintf(err, errlen, "cannot map spool segment %s/%s: %s", sp->dir, name, strerror(errno));
        close(fd);
        return -1;
    }
    s_run *runs = NULL;
    size_t nruns = 0, capruns = 0;
    uint64_t off = 0, seq = first, run_from = 0, run_first = first, keep = 0;
    int rc = -1;
    for (;;) {
        uint64_t q = 0, len = 0;
        while (s_frame_at(m, size, off, &q, &len) && q == seq) {
            off += len;
            seq++;
        }
        if (nruns == capruns) {
            capruns = capruns ? capruns * 2 : 4;
            s_run *g = realloc(runs, capruns * sizeof *g);
            if (!g) {
                snprintf(err, errlen, "out of memory checking the spool");
                goto out;
            }
            runs = g;
        }
        if (nruns == 0 || seq > run_first)
            runs[nruns++] = (s_run){run_from, off, run_first, seq};
        if (off == size)
            break;
        uint64_t next = s_resync(m, size, off + 1, seq);
        if (next == size) {
            if (s_torn_tail(m, size, off, seq)) {
                /* Cut short by a crash: the fsync had not returned, so nothing
                 * from here on was acknowledged upstream. */
                rec->truncated_bytes += size - off;
            } else {
                /* Damage: the stretch may have held records already delivered, so
                 * no seq it could hold is given again. */
                uint64_t hi = seq + (size - off) / S_HDR;
                for (size_t j = 0; j < nlater; j++)
                    if (later[j]) {
                        hi = hi < later[j] ? hi : later[j]; /* the next segment's seqs are known */
                        break;
                    }
                s_note_corrupt(rec, name, off, size, seq, hi);
                if (hi > sp->min_next)
                    sp->min_next = hi;
            }
            break;
        }
        s_frame_at(m, size, next, &q, &len);
        s_note_corrupt(rec, name, off, next, seq, q);
        run_from = off = next;
        run_first = seq = q;
    }
    for (size_t i = 1; i < nruns; i++) {
        if (s_write_run(sp, m, runs[i].from, runs[i].to, runs[i].first, err, errlen) < 0)
            goto out;
        rec->recovered_records += runs[i].end - runs[i].first;
        for (size_t j = 0; j < nlater; j++)
            if (later[j] == runs[i].first)
                later[j] = 0;
    }
    keep = runs[0].to;
    if (keep < size && (ftruncate(fd, (off_t)keep) < 0 || fdatasync(fd) < 0)) {
        snprintf(err, errlen, "cannot cut the damaged or torn part of %s/%s: %s", sp->dir, name, strerror(errno));
        goto out;
    }
    rc = 0;
    for (size_t i = 0; i < nruns && rc == 0; i++)
        rc = s_push_seg(sp, runs[i].first, runs[i].end, runs[i].to - runs[i].from);
    if (rc < 0)
        snprintf(err, errlen, "out of memory checking the spool");
out:
    free(runs);
    munmap((void *)(uintptr_t)m, (size_t)size);
    close(fd);
    return rc;
}

static void s_write_cursor(spool *sp, bool sync)
{
    unsigned char c[16];
    ew_le_put64(c, sp->acked);
    ew_le_put32(c + 8, S_CURSOR_MAGIC);
    ew_le_put32(c + 12, (uint32_t)crc32(0L, c, 12));
    /* 16 bytes at offset 0 land in one page; the checksum catches the unlikely tear. */
    if (pwrite(sp->cfd, c, sizeof c, 0) != (ssize_t)sizeof c)
        return; /* the previous cursor stays: more resends, nothing lost */
    int64_t now = s_mono();
    if (sync || now - sp->cursor_synced_ns > 1000000000LL) {
        fdatasync(sp->cfd);
        sp->cursor_synced_ns = now;
    }
}

static int s_new_segment(spool *sp, uint64_t first, char *err, size_t errlen)
{
    char name[64];
    s_segname(name, sizeof name, first);
    int fd = openat(sp->dirfd, name, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create spool segment %s/%s: %s", sp->dir, name, strerror(errno));
        return -1;
    }
    if (fsync(sp->dirfd) < 0) {
        snprintf(err, errlen, "cannot sync spool folder %s: %s", sp->dir, strerror(errno));
        close(fd);
        return -1;
    }
    pthread_mutex_lock(&sp->mu);
    int rc = s_push_seg(sp, first, first, 0);
    pthread_mutex_unlock(&sp->mu);
    if (rc < 0) {
        snprintf(err, errlen, "out of memory growing the spool");
        close(fd);
        return -1;
    }
    if (sp->wfd >= 0)
        close(sp->wfd);
    sp->wfd = fd;
    return 0;
}

/* Removes segment i (not the last); the caller holds the lock. */
static void s_remove_seg(spool *sp, size_t i)
{
    char name[64];
    s_segname(name, sizeof name, sp->segs[i].first);
    unlinkat(sp->dirfd, name, 0);
    sp->total_bytes -= sp->segs[i].bytes;
    if (sp->rfirst == sp->segs[i].first) {
        close(sp->rfd);
        sp->rfd = -1;
        sp->rfirst = 0;
        if (sp->rseq < sp->segs[i + 1].first)
            sp->rseq = sp->segs[i + 1].first;
        sp->roff = 0;
    }
    memmove(&sp->segs[i], &sp->segs[i + 1], (sp->nsegs - i - 1) * sizeof *sp->segs);
    sp->nsegs--;
}

/* Removes the last segment, empty (its records were all damaged). */
static void s_remove_last_empty(spool *sp)
{
    char name[64];
    s_segname(name, sizeof name, sp->segs[sp->nsegs - 1].first);
    unlinkat(sp->dirfd, name, 0);
    sp->nsegs--;
}

/* Deletes the segments before the last one that are fully acknowledged. */
static void s_gc(spool *sp)
{
    while (sp->nsegs > 1 && sp->segs[0].end <= sp->acked)
        s_remove_seg(sp, 0);
}

int spool_open(spool **out, const char *dir, uint64_t max_bytes, spool_recovery *rec, char *err,
               size_t errlen)
{
    *out = NULL;
    memset(rec, 0, sizeof *rec);
    spool *sp = calloc(1, sizeof *sp);
    if (!sp || !(sp->dir = strdup(dir))) {
        free(sp);
        snprintf(err, errlen, "out of memory opening the spool");
        return SPOOL_ERR;
    }
    pthread_mutex_init(&sp->mu, NULL);
    sp->dirfd = sp->cfd = sp->wfd = sp->rfd = -1;
    sp->max_bytes = max_bytes;
    /* Dropping and deleting work by whole segments: eight per spool keeps a drop
     * to an eighth of it. */
    sp->seg_bytes = max_bytes / 8;
    if (sp->seg_bytes < 65536)
        sp->seg_bytes = 65536;
    if (sp->seg_bytes > (64u << 20))
        sp->seg_bytes = 64u << 20;
    uint64_t *firsts = NULL;
    size_t nfirsts = 0, capf = 0;
    if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create the spool folder %s: %s", dir, strerror(errno));
        goto fail;
    }
    sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sp->dirfd < 0) {
        snprintf(err, errlen, "cannot open the spool folder %s: %s", dir, strerror(errno));
        goto fail;
    }
    DIR *d = fdopendir(dup(sp->dirfd));
    if (!d) {
        snprintf(err, errlen, "cannot list the spool folder %s: %s", dir, strerror(errno));
        goto fail;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        size_t nlen = strlen(e->d_name);
        if (strncmp(e->d_name, ".seg-", 5) == 0 && nlen > 9 && strcmp(e->d_name + nlen - 4, ".tmp") == 0) {
            unlinkat(sp->dirfd, e->d_name, 0); /* a recovery interrupted by a crash; it is redone */
            continue;
        }
        if (strncmp(e->d_name, "seg-", 4) != 0 || nlen != 20)
            continue;
        uint64_t f = strtoull(e->d_name + 4, &end, 16);
        if (*end || f == 0)
            continue;
        if (nfirsts == capf) {
            capf = capf ? capf * 2 : 16;
            uint64_t *g = realloc(firsts, capf * sizeof *g);
            if (!g) {
                closedir(d);
                snprintf(err, errlen, "out of memory listing the spool");
                goto fail;
            }
            firsts = g;
        }
        firsts[nfirsts++] = f;
    }
    closedir(d);
    if (nfirsts > 1) /* an empty spool has no array at all */
        qsort(firsts, nfirsts, sizeof *firsts, s_cmp_u64);
    for (size_t i = 0; i < nfirsts; i++)
        if (firsts[i] && s_scan(sp, firsts[i], firsts + i + 1, nfirsts - i - 1, rec, err, errlen) < 0)
            goto fail;
    free(firsts);
    firsts = NULL;
    sp->cfd = openat(sp->dirfd, "cursor", O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (sp->cfd < 0) {
        snprintf(err, errlen, "cannot open %s/cursor: %s", dir, strerror(errno));
        goto fail;
    }
    unsigned char c[16];
    bool have_cursor = pread(sp->cfd, c, sizeof c, 0) == (ssize_t)sizeof c &&
                       ew_le_get32(c + 8) == S_CURSOR_MAGIC && ew_le_get32(c + 12) == (uint32_t)crc32(0L, c, 12);
    if (have_cursor)
        sp->acked = ew_le_get64(c);
    /* Drop empty segments other than the last, then make sure one exists to write to. */
    for (size_t i = 0; sp->nsegs > 1 && i + 1 < sp->nsegs;) {
        if (sp->segs[i].end == sp->segs[i].first)
            s_remove_seg(sp, i);
        else
            i++;
    }
    if (sp->nsegs == 0) {
        uint64_t first = have_cursor && sp->acked > 0 ? sp->acked : 1;
        if (first < sp->min_next)
            first = sp->min_next;
        if (s_new_segment(sp, first, err, errlen) < 0)
            goto fail;
    } else if (sp->min_next > sp->segs[sp->nsegs - 1].end) {
        /* The last segment's tail was damaged: new records go to a segment that
         * starts past every seq the damage could hold. */
        if (sp->segs[sp->nsegs - 1].end == sp->segs[sp->nsegs - 1].first)
            s_remove_last_empty(sp);
        if (s_new_segment(sp, sp->min_next, err, errlen) < 0)
            goto fail;
    } else {
        char name[64];
        s_segname(name, sizeof name, sp->segs[sp->nsegs - 1].first);
        sp->wfd = openat(sp->dirfd, name, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (sp->wfd < 0) {
            snprintf(err, errlen, "cannot open %s/%s: %s", dir, name, strerror(errno));
            goto fail;
        }
    }
    if (!have_cursor && nfirsts > 0)
        rec->cursor_lost = true;
    uint64_t lo = sp->segs[0].first, hi = sp->segs[sp->nsegs - 1].end;
    if (!have_cursor || sp->acked < lo)
        sp->acked = lo;
    if (sp->acked > hi)
        sp->acked = hi;
    s_gc(sp);
    s_write_cursor(sp, true);
    sp->rseq = sp->acked;
    rec->records = spool_pending(sp);
    *out = sp;
    return SPOOL_OK;
fail:
    free(firsts);
    spool_close(&sp);
    return SPOOL_ERR;
}

void spool_close(spool **spp)
{
    spool *sp = spp ? *spp : NULL;
    if (!sp)
        return;
    if (sp->cfd >= 0) {
        s_write_cursor(sp, true);
        close(sp->cfd);
    }
    if (sp->wfd >= 0)
        close(sp->wfd);
    if (sp->rfd >= 0)
        close(sp->rfd);
    if (sp->dirfd >= 0)
        close(sp->dirfd);
    pthread_mutex_destroy(&sp->mu);
    free(sp->segs);
    free(sp->wbuf);
    free(sp->rbuf);
    free(sp->dir);
    free(sp);
    *spp = NULL;
}

uint64_t spool_next_seq(spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    uint64_t v = sp->segs[sp->nsegs - 1].end;
    pthread_mutex_unlock(&sp->mu);
    return v;
}

int spool_append(spool *sp, const spool_rec *recs, size_t n, bool drop_oldest, uint64_t *dropped,
                 char *err, size_t errlen)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (recs[i].len > S_MAX_RECORD) {
            snprintf(err, errlen, "a message of %zu bytes is larger than the spool's limit of %u",
                     recs[i].len, S_MAX_RECORD);
            return SPOOL_ERR;
        }
        total += S_HDR + recs[i].len;
    }
    if (n == 0)
        return SPOOL_OK;
    if (total > sp->max_bytes / 2) {
        snprintf(err, errlen, "a batch of %zu messages (%zu bytes) does not fit in spool_max = %" PRIu64
                              " bytes; raise spool_max or lower batch_max", n, total, sp->max_bytes);
        return SPOOL_ERR;
    }
    pthread_mutex_lock(&sp->mu);
    s_seg *last = &sp->segs[sp->nsegs - 1];
    bool rotate = last->bytes > 0 && (last->bytes + total > sp->seg_bytes || sp->rotate_next);
    uint64_t first = last->end;
    pthread_mutex_unlock(&sp->mu);
    if (rotate && s_new_segment(sp, first, err, errlen) < 0)
        return SPOOL_AGAIN;
    if (rotate)
        sp->rotate_next = false;
    pthread_mutex_lock(&sp->mu);
    s_gc(sp);
    if (sp->total_bytes + total > sp->max_bytes) {
        if (!drop_oldest) {
            pthread_mutex_unlock(&sp->mu);
            return SPOOL_FULL;
        }
        while (sp->total_bytes + total > sp->max_bytes && sp->nsegs > 1) {
            s_seg *s = &sp->segs[0];
            uint64_t from = s->first > sp->acked ? s->first : sp->acked;
            if (s->end > from)
                *dropped += s->end - from;
            if (sp->acked < s->end)
                sp->acked = s->end;
            s_remove_seg(sp, 0);
        }
        s_write_cursor(sp, false);
    }
    pthread_mutex_unlock(&sp->mu);
    if (!s_grow((void **)&sp->wbuf, &sp->wcap, total)) {
        snprintf(err, errlen, "out of memory framing %zu messages for the spool", n);
        return SPOOL_AGAIN;
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char *h = (unsigned char *)sp->wbuf + off;
        uint64_t seq = first + i;
        ew_le_put32(h, S_MAGIC);
        ew_le_put32(h + 4, (uint32_t)recs[i].len);
        ew_le_put64(h + 8, seq);
        ew_le_put32(h + 16, s_crc(seq, recs[i].data, recs[i].len));
        ew_le_put32(h + 20, 0);
        memcpy(h + S_HDR, recs[i].data, recs[i].len);
        off += S_HDR + recs[i].len;
    }
    pthread_mutex_lock(&sp->mu);
    uint64_t at = sp->segs[sp->nsegs - 1].bytes;
    pthread_mutex_unlock(&sp->mu);
    size_t done = 0;
    while (done < total) {
        ssize_t w = write(sp->wfd, sp->wbuf + done, total - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            /* Undo the partial batch so that the segment never holds half of it. */
            if (ftruncate(sp->wfd, (off_t)at) < 0) {
                snprintf(err, errlen, "writing to the spool in %s failed (%s) and its partial record "
                                      "cannot be removed (%s)", sp->dir, strerror(e), strerror(errno));
                return SPOOL_ERR;
            }
            /* Segments are deleted whole once delivered: a full disk frees no
             * space while the one being written is also the oldest. */
            sp->rotate_next = e == ENOSPC || e == EDQUOT;
            snprintf(err, errlen, "writing to the spool in %s failed: %s; free space on its disk",
                     sp->dir, strerror(e));
            return SPOOL_AGAIN;
        }
        done += (size_t)w;
    }
    if (fdatasync(sp->wfd) < 0) {
        int e = errno;
        sp->rotate_next = e == ENOSPC || e == EDQUOT;
        if (ftruncate(sp->wfd, (off_t)at) < 0) {
            snprintf(err, errlen, "syncing the spool in %s failed (%s) and its unsynced records "
                                  "cannot be removed (%s)", sp->dir, strerror(e), strerror(errno));
            return SPOOL_ERR;
        }
        snprintf(err, errlen, "syncing the spool in %s failed: %s", sp->dir, strerror(e));
        return SPOOL_AGAIN;
    }
    pthread_mutex_lock(&sp->mu);
    s_seg *s = &sp->segs[sp->nsegs - 1];
    s->bytes += total;
    s->end += n;
    sp->total_bytes += total;
    pthread_mutex_unlock(&sp->mu);
    return SPOOL_OK;
}

/* Positions the reader at sp->rseq, opening its segment; the caller holds the lock.
 * Returns the segment index, or -1 when rseq is not written yet. */
static long s_locate(spool *sp, char *err, size_t errlen)
{
    size_t i = 0;
    while (i < sp->nsegs && sp->segs[i].end <= sp->rseq)
        i++;
    if (i == sp->nsegs)
        return -1;
    s_seg *s = &sp->segs[i];
    if (sp->rseq < s->first)
        sp->rseq = s->first; /* a gap left by a drop or a corrupt segment */
    if (sp->rfirst == s->first && sp->rfd >= 0)
        return (long)i;
    if (sp->rfd >= 0)
        close(sp->rfd);
    char name[64];
    s_segname(name, sizeof name, s->first);
    sp->rfd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (sp->rfd < 0) {
        snprintf(err, errlen, "cannot open spool segment %s/%s: %s", sp->dir, name, strerror(errno));
        sp->rfirst = 0;
        return -2;
    }
    sp->rfirst = s->first;
    /* Walk the headers to rseq (after a rewind into the middle of a segment). */
    uint64_t off = 0;
    for (uint64_t q = s->first; q < sp->rseq; q++) {
        unsigned char h[S_HDR];
        if (pread(sp->rfd, h, S_HDR, (off_t)off) != S_HDR) {
            snprintf(err, errlen, "spool segment %s/%s is shorter than recorded", sp->dir, name);
            return -2;
        }
        off += S_HDR + ew_le_get32(h + 4);
    }
    sp->roff = off;
    return (long)i;
}

int spool_read(spool *sp, uint64_t *seq, const void **data, size_t *len, char *err, size_t errlen)
{
    pthread_mutex_lock(&sp->mu);
    long i = s_locate(sp, err, errlen);
    if (i < 0) {
        pthread_mutex_unlock(&sp->mu);
        return i == -1 ? 0 : SPOOL_ERR;
    }
    unsigned char h[S_HDR];
    int rc = SPOOL_ERR;
    if (pread(sp->rfd, h, S_HDR, (off_t)sp->roff) != S_HDR) {
        snprintf(err, errlen, "cannot read the spool in %s: %s", sp->dir, strerror(errno));
        goto out;
    }
    uint32_t n = ew_le_get32(h + 4);
    if (ew_le_get32(h) != S_MAGIC || ew_le_get64(h + 8) != sp->rseq || n > S_MAX_RECORD) {
        snprintf(err, errlen, "spool record %" PRIu64 " in %s has a bad header", sp->rseq, sp->dir);
        goto out;
    }
    if (!s_grow((void **)&sp->rbuf, &sp->rcap, n + 1)) {
        snprintf(err, errlen, "out of memory reading the spool");
        goto out;
    }
    if (pread(sp->rfd, sp->rbuf, n, (off_t)(sp->roff + S_HDR)) != (ssize_t)n ||
        s_crc(sp->rseq, sp->rbuf, n) != ew_le_get32(h + 16)) {
        snprintf(err, errlen, "spool record %" PRIu64 " in %s fails its checksum", sp->rseq, sp->dir);
        goto out;
    }
    *seq = sp->rseq;
    *data = sp->rbuf;
    *len = n;
    sp->roff += S_HDR + n;
    sp->rseq++;
    rc = 1;
out:
    pthread_mutex_unlock(&sp->mu);
    return rc;
}

void spool_rewind(spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    sp->rseq = sp->acked;
    if (sp->rfd >= 0)
        close(sp->rfd);
    sp->rfd = -1;
    sp->rfirst = 0;
    pthread_mutex_unlock(&sp->mu);
}

void spool_ack(spool *sp, uint64_t next_unacked, bool sync)
{
    pthread_mutex_lock(&sp->mu);
    if (next_unacked > sp->acked) {
        sp->acked = next_unacked;
        s_gc(sp);
        s_write_cursor(sp, sync);
    } else if (sync) {
        s_write_cursor(sp, true);
    }
    pthread_mutex_unlock(&sp->mu);
}

uint64_t spool_acked(spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    uint64_t v = sp->acked;
    pthread_mutex_unlock(&sp->mu);
    return v;
}

uint64_t spool_pending(spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    uint64_t n = 0;
    for (size_t i = 0; i < sp->nsegs; i++) {
        uint64_t from = sp->segs[i].first > sp->acked ? sp->segs[i].first : sp->acked;
        if (sp->segs[i].end > from)
            n += sp->segs[i].end - from;
    }
    pthread_mutex_unlock(&sp->mu);
    return n;
}

uint64_t spool_bytes(spool *sp)
{
    pthread_mutex_lock(&sp->mu);
    uint64_t v = sp->total_bytes;
    pthread_mutex_unlock(&sp->mu);
    return v;
}
