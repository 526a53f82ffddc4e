/* Larson-style server under the process's C malloc: threads replace random slots of one
 * shared pool with blocks of random sizes (90% 16 B-1 KiB, 9% 1-8 KiB, 1% 8-128 KiB),
 * freeing the displaced block, which another thread usually allocated (remote frees).
 *
 * usage: larson <scale> [threads=8] */
#include <pthread.h>
#include <string.h>

#include "common.h"

#define SLOTS 8192

static void *slots[SLOTS];
static size_t ops_per_thread;

static size_t block_size(rng_t *r) {
    size_t p = rng_below(r, 100);
    if (p == 0) return rng_range(r, 8192, 131072);
    if (p < 10) return rng_range(r, 1024, 8192);
    return rng_range(r, 16, 1024);
}

static void *worker(void *arg) {
    uint64_t id = (uint64_t)(uintptr_t)arg;
    rng_t r = rng_new(3001 + id);
    uint64_t sum = 0;
    for (size_t i = 0; i < ops_per_thread; i++) {
        size_t size = block_size(&r);
        unsigned char tag = (unsigned char)rng_next(&r);
        unsigned char *p = malloc(size);
        if (!p) die("malloc returned NULL");
        memset(p, tag, size < 16 ? size : 16);
        sum += size + tag;
        void *old = __atomic_exchange_n(&slots[rng_below(&r, SLOTS)], p, __ATOMIC_ACQ_REL);
        free(old);
    }
    return (void *)(uintptr_t)sum;
}

int main(int argc, char **argv) {
    int threads = threads_arg(argc, argv, 8);
    ops_per_thread = scaled(argc, argv, 4000000.0) / (size_t)threads;
    rng_t seed = rng_new(3000);
    for (size_t i = 0; i < SLOTS; i++) {
        size_t size = block_size(&seed);
        slots[i] = malloc(size);
        if (!slots[i]) die("malloc returned NULL");
        memset(slots[i], 1, size < 16 ? size : 16);
    }
    double t0 = now_s();
    pthread_t tids[256];
    if (threads > 256) threads = 256;
    for (int t = 0; t < threads; t++)
        if (pthread_create(&tids[t], NULL, worker, (void *)(uintptr_t)t) != 0) die("pthread_create");
    uint64_t sum = 0;
    for (int t = 0; t < threads; t++) {
        void *ret;
        pthread_join(tids[t], &ret);
        sum += (uint64_t)(uintptr_t)ret;
    }
    for (size_t i = 0; i < SLOTS; i++) free(slots[i]);
    report(t0, sum);
    return 0;
}
