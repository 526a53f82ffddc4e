/* Single-threaded fixed-size loops in the manner of glibc's malloc-simple benchmark: for each
 * size (16 B to 4 KiB), rounds of "allocate a batch of blocks, write one word in each, free
 * them all" — in allocation order, in reverse, and interleaved — so the cost measured is the
 * allocator's call overhead and its cache of recently freed blocks, nothing else.
 *
 * usage: simple <scale> */
#include "common.h"

#define BATCH 256

int main(int argc, char **argv) {
    size_t rounds = scaled(argc, argv, 6000.0);
    static const size_t sizes[] = {16, 32, 48, 64, 96, 128, 256, 512, 1024, 2048, 4096};
    static void *blk[BATCH];
    uint64_t sum = 0;
    double t0 = now_s();
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t size = sizes[s];
        for (size_t round = 0; round < rounds; round++) {
            for (size_t i = 0; i < BATCH; i++) {
                blk[i] = malloc(size);
                if (!blk[i]) die("malloc failed");
                *(volatile size_t *)blk[i] = i + size;
            }
            for (size_t i = 0; i < BATCH; i++) sum += *(volatile size_t *)blk[i];
            switch (round % 3) {
            case 0: /* in order */
                for (size_t i = 0; i < BATCH; i++) free(blk[i]);
                break;
            case 1: /* reverse */
                for (size_t i = BATCH; i-- > 0;) free(blk[i]);
                break;
            default: /* evens then odds */
                for (size_t i = 0; i < BATCH; i += 2) free(blk[i]);
                for (size_t i = 1; i < BATCH; i += 2) free(blk[i]);
                break;
            }
        }
    }
    report(t0, sum);
    return 0;
}
