/* spool: the mqtt sink's crash-safe store-and-forward queue of messages on disk. */
#ifndef EW_MQTT_SPOOL_H
#define EW_MQTT_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A folder of segment files seg-<first seq in hex>, each a run of records
 * [magic, length, seq, crc32][payload], plus a `cursor` file holding the seq of
 * the first record not yet acknowledged by the broker. One writer thread appends
 * (spool_append, fsync per call: the acknowledgement to upstream) and one reader
 * thread reads in order and acknowledges (spool_read, spool_ack); both may run at
 * once. On open a record torn by a crash at the end of a segment is truncated
 * away; a damaged stretch anywhere else (a bad byte on disk) is cut out and every
 * intact record after it kept: the scan resynchronises on the next frame whose
 * magic, length and checksum (which covers its seq) are right, and the records
 * after the damage move to a segment of their own named after their first seq, so
 * every segment stays a contiguous run of seqs. A seq is never given twice: after
 * a damaged tail, new records start past every seq the damage could hold. */
typedef struct spool spool;

/* One message to append. */
typedef struct spool_rec {
    const void *data;
    size_t len;
} spool_rec;

/* What spool_open found. */
typedef struct spool_recovery {
    uint64_t records;         /* records waiting (not acknowledged) */
    uint64_t truncated_bytes; /* bytes of a record torn by a crash, cut from a segment's end */
    bool cursor_lost;         /* the cursor file was missing or bad: resending from the oldest */
    /* Damage that a crash cannot explain (a bad byte or block on disk): */
    uint64_t corrupt_stretches; /* damaged stretches cut out */
    uint64_t corrupt_bytes;     /* their bytes */
    uint64_t lost_records;      /* seqs they held that no intact record carries (at most,
                                 * for a damaged tail: its bytes / the header size) */
    uint64_t recovered_records; /* intact records kept after a damaged stretch */
    char corrupt_where[512];    /* "seg-... bytes A-B (ids P-Q)", ... : file and offsets */
} spool_recovery;

enum { SPOOL_OK = 0, SPOOL_FULL = 1, SPOOL_ERR = -1, SPOOL_AGAIN = -2 };

/* Opens (creating) the spool in folder `dir` bounded by max_bytes on disk.
 * Returns SPOOL_OK or SPOOL_ERR with the reason in err. */
int spool_open(spool **out, const char *dir, uint64_t max_bytes, spool_recovery *rec, char *err,
               size_t errlen);
/* Syncs the cursor, closes the files and sets *sp to NULL. */
void spool_close(spool **sp);

/* Writer: the seq the next appended record gets (ids are per spool, monotonic, never reused). */
uint64_t spool_next_seq(spool *sp);
/* Writer: appends n records durably (one write, one fdatasync). When they do not fit:
 * with drop_oldest the oldest whole segments are deleted and their unacknowledged
 * records added to *dropped; otherwise SPOOL_FULL and nothing is written. SPOOL_AGAIN
 * on an I/O error that may pass (disk full: the partial write is undone), SPOOL_ERR
 * otherwise; err says why. */
int spool_append(spool *sp, const spool_rec *recs, size_t n, bool drop_oldest, uint64_t *dropped,
                 char *err, size_t errlen);

/* Reader: the next record after the read position. Returns 1 with *data (valid
 * until the next reader call) and *seq, 0 when there is none yet, SPOOL_ERR on a
 * read error (err says why). */
int spool_read(spool *sp, uint64_t *seq, const void **data, size_t *len, char *err, size_t errlen);
/* Reader: moves the read position back to the first unacknowledged record. */
void spool_rewind(spool *sp);
/* Reader: records below `next_unacked` were acknowledged: persists the cursor
 * (written at once, so kill -9 keeps it; fdatasync'd at most once a second or on
 * `sync`) and deletes segments fully acknowledged. */
void spool_ack(spool *sp, uint64_t next_unacked, bool sync);
/* The first unacknowledged seq. */
uint64_t spool_acked(spool *sp);
/* Records waiting for acknowledgement, and bytes on disk. */
uint64_t spool_pending(spool *sp);
uint64_t spool_bytes(spool *sp);

#endif
