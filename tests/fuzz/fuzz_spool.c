/* fuzz_spool: the mqtt sink's spool recovering from a folder of arbitrary
 * bytes (a torn or corrupt segment, a damaged cursor), then read, acknowledged
 * and appended to as the sink would. */
#include "../../plugins/mqtt/spool.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tempfiles.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* Byte 0: bit 0 = the next 16 bytes are the cursor file; bits 1-2 = the first
     * seq of the segment (its name); bit 3 = the segment is split in two at its
     * middle (two files, the second named after seq + 1); bits 4-5 = the spool's
     * size bound; the rest: the segment's bytes. */
    unsigned sel = data[0];
    const uint8_t *p = data + 1;
    size_t left = size - 1;
    char dir[] = "/tmp/ew-fuzz-spool-XXXXXX";
    if (!mkdtemp(dir))
        return 0;
    if ((sel & 1) && left >= 16) {
        fuzz_write(dir, "cursor", p, 16);
        p += 16;
        left -= 16;
    }
    static const uint64_t firsts[4] = {1, 2, 0x10, UINT64_C(0xfffffffffffffff0)};
    uint64_t first = firsts[(sel >> 1) & 3];
    char name[32];
    size_t half = sel & 8 ? left / 2 : left;
    snprintf(name, sizeof name, "seg-%016llx", (unsigned long long)first);
    fuzz_write(dir, name, p, half);
    if (sel & 8) {
        snprintf(name, sizeof name, "seg-%016llx", (unsigned long long)first + 1);
        fuzz_write(dir, name, p + half, left - half);
    }
    static const uint64_t bounds[4] = {1u << 20, 4096, 64, 1u << 30};
    spool *sp = NULL;
    spool_recovery rec = {0};
    char err[400];
    if (spool_open(&sp, dir, bounds[(sel >> 4) & 3], &rec, err, sizeof err) == SPOOL_OK) {
        uint64_t seq;
        const void *rdata;
        size_t len;
        uint64_t last = spool_acked(sp);
        int n = 0;
        while (n < 10000 && spool_read(sp, &seq, &rdata, &len, err, sizeof err) == 1) {
            last = seq + 1;
            n++;
        }
        spool_ack(sp, last, false);
        uint64_t dropped = 0;
        spool_rec r = {"hello", 5};
        spool_append(sp, &r, 1, sel & 0x40, &dropped, err, sizeof err);
        spool_rewind(sp);
        while (n < 20000 && spool_read(sp, &seq, &rdata, &len, err, sizeof err) == 1)
            n++;
        spool_close(&sp);
    }
    fuzz_rmdir(dir);
    return 0;
}
