/* Each thread replaces random slots of its own working set (glibc's malloc-thread shape):
 * free the slot's block, malloc a new one of a random size (mostly 8-512 B, some to 8 KiB),
 * write its first and last bytes. Nothing crosses threads, so this measures how well the
 * allocator's per-thread fronts scale with more threads than cores.
 *
 * usage: threads <scale> [threads, default 4] */
#include <pthread.h>
#include <string.h>

#include "common.h"

#define SLOTS 2048

struct job {
    size_t steps;
    uint64_t seed;
    uint64_t sum;
};

static size_t pick(rng_t *r) {
    size_t p = rng_below(r, 100);
    if (p < 5) return rng_range(r, 512, 8192);
    return rng_range(r, 8, 512);
}

static void *run(void *arg) {
    struct job *j = arg;
    rng_t r = rng_new(j->seed);
    unsigned char *slot[SLOTS];
    size_t size[SLOTS];
    memset(slot, 0, sizeof slot);
    uint64_t sum = 0;
    for (size_t k = 0; k < j->steps; k++) {
        size_t i = rng_below(&r, SLOTS);
        if (slot[i]) {
            sum += slot[i][0] + slot[i][size[i] - 1];
            free(slot[i]);
        }
        size_t n = pick(&r);
        unsigned char *p = malloc(n);
        if (!p) die("malloc failed");
        p[0] = (unsigned char)n;
        p[n - 1] = (unsigned char)(n >> 3);
        slot[i] = p;
        size[i] = n;
    }
    for (size_t i = 0; i < SLOTS; i++) free(slot[i]);
    j->sum = sum;
    return NULL;
}

int main(int argc, char **argv) {
    size_t steps = scaled(argc, argv, 12000000.0);
    int nt = threads_arg(argc, argv, 4);
    pthread_t th[256];
    struct job jobs[256];
    if (nt > 256) nt = 256;
    double t0 = now_s();
    for (int t = 0; t < nt; t++) {
        jobs[t].steps = steps / (size_t)nt;
        jobs[t].seed = 100 + (uint64_t)t;
        if (pthread_create(&th[t], NULL, run, &jobs[t])) die("pthread_create failed");
    }
    uint64_t sum = 0;
    for (int t = 0; t < nt; t++) {
        pthread_join(th[t], NULL);
        sum += jobs[t].sum;
    }
    report(t0, sum);
    return 0;
}
