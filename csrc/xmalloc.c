/* Threads that allocate, other threads that free, one block at a time (the shape of
 * xmalloc-test): each of N allocating threads hands every block it makes to one of N freeing
 * threads through a single-producer single-consumer ring (no lock per block), round robin;
 * the freeing thread reads the block and frees it. Every free is remote and unbatched by the
 * program.
 *
 * usage: xmalloc <scale> [pairs=4] */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "common.h"

#define RING 1024
#define MAXP 32

struct ring {
    _Atomic size_t head; /* next slot the freer reads */
    char pad0[64 - sizeof(size_t)];
    _Atomic size_t tail; /* next slot the allocator writes */
    char pad1[64 - sizeof(size_t)];
    unsigned char *slot[RING];
};

static struct ring *rings; /* rings[a * pairs + f]: allocator a to freer f */
static int pairs;
static size_t per_allocator;
static _Atomic int allocators_left;

static void *allocator(void *arg) {
    int a = (int)(uintptr_t)arg;
    rng_t r = rng_new(7000 + (uint64_t)a);
    for (size_t i = 0; i < per_allocator; i++) {
        size_t size = rng_below(&r, 4) == 0 ? rng_range(&r, 128, 1024) : rng_range(&r, 16, 128);
        unsigned char *p = malloc(size);
        if (!p) die("malloc returned NULL");
        memcpy(p, &size, sizeof size);
        p[size - 1] = (unsigned char)i;
        struct ring *q = &rings[a * pairs + (int)(i % (size_t)pairs)];
        size_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
        while (t - atomic_load_explicit(&q->head, memory_order_acquire) == RING) sched_yield();
        q->slot[t % RING] = p;
        atomic_store_explicit(&q->tail, t + 1, memory_order_release);
    }
    atomic_fetch_sub(&allocators_left, 1);
    return NULL;
}

/* Frees what the rings to freer `f` hold; returns how many blocks. */
static size_t drain(int f, uint64_t *sum) {
    size_t n = 0;
    for (int a = 0; a < pairs; a++) {
        struct ring *q = &rings[a * pairs + f];
        size_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
        size_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
        for (; h != t; h++, n++) {
            unsigned char *p = q->slot[h % RING];
            size_t size;
            memcpy(&size, p, sizeof size);
            *sum += size + p[size - 1];
            free(p);
        }
        atomic_store_explicit(&q->head, h, memory_order_release);
    }
    return n;
}

static void *freer(void *arg) {
    int f = (int)(uintptr_t)arg;
    uint64_t sum = 0;
    for (;;) {
        /* Read before the pass: a pass after the last allocator finished sees all it made. */
        int done = atomic_load(&allocators_left) == 0;
        if (drain(f, &sum) == 0) {
            if (done) break;
            sched_yield();
        }
    }
    return (void *)(uintptr_t)sum;
}

int main(int argc, char **argv) {
    pairs = threads_arg(argc, argv, 4);
    if (pairs > MAXP) pairs = MAXP;
    per_allocator = scaled(argc, argv, 4000000.0) / (size_t)pairs;
    rings = calloc((size_t)pairs * (size_t)pairs, sizeof *rings);
    if (!rings) die("calloc returned NULL");
    atomic_store(&allocators_left, pairs);
    double t0 = now_s();
    pthread_t al[MAXP], fr[MAXP];
    for (int i = 0; i < pairs; i++) {
        if (pthread_create(&fr[i], NULL, freer, (void *)(uintptr_t)i) != 0) die("pthread_create");
        if (pthread_create(&al[i], NULL, allocator, (void *)(uintptr_t)i) != 0) die("pthread_create");
    }
    uint64_t sum = 0;
    for (int i = 0; i < pairs; i++) pthread_join(al[i], NULL);
    for (int i = 0; i < pairs; i++) {
        void *ret;
        pthread_join(fr[i], &ret);
        sum += (uint64_t)(uintptr_t)ret;
    }
    free(rings);
    report(t0, sum);
    return 0;
}
