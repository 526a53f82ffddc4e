/* Multithreaded stress for the LD_PRELOAD library: every thread allocates with malloc, calloc,
 * realloc, memalign/posix_memalign/aligned_alloc, fills each block with a pattern derived from
 * its address and size, and hands a share of its blocks to the next thread through a mailbox,
 * so frees happen on other threads than the allocating ones. Every block's pattern is checked
 * before it is resized or freed. Prints a checksum that depends only on the seed and the
 * operation count (it sums the sizes requested), so two runs (with and without preload) can be compared.
 *
 * usage: stress THREADS OPS_PER_THREAD [SECONDS]
 *   with SECONDS > 0, each thread repeats rounds of OPS_PER_THREAD until the time is up
 *   (the checksum then depends on timing and is printed as 0). */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 512
#define MAILBOX 256

struct blk { unsigned char *p; size_t n; uint64_t seed; };

struct mailbox {
    pthread_mutex_t mu;
    struct blk q[MAILBOX];
    int len;
};

static int nthreads;
static long ops;
static double seconds;
static struct mailbox *boxes;
static volatile int stop_flag;

static uint64_t rng(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return *s = x;
}

static void fill(struct blk *b) {
    size_t i;
    unsigned char v = (unsigned char)(b->seed * 131u);
    for (i = 0; i < b->n; i += (i < 64 ? 1 : 61)) b->p[i] = (unsigned char)(v + i);
    if (b->n) b->p[b->n - 1] = (unsigned char)(v ^ 0x5a);
}

static void check(const struct blk *b, const char *where) {
    size_t i;
    unsigned char v = (unsigned char)(b->seed * 131u);
    if (b->n == 0) return;
    if (b->p[b->n - 1] != (unsigned char)(v ^ 0x5a)) goto bad;
    for (i = 0; i + 1 < b->n; i += (i < 64 ? 1 : 61))
        if (b->p[i] != (unsigned char)(v + i)) goto bad;
    return;
bad:
    fprintf(stderr, "stress: pattern broken in %s (block %p, %zu bytes)\n", where, (void *)b->p, b->n);
    abort();
}

static size_t pick_size(uint64_t *s) {
    uint64_t r = rng(s);
    switch (r % 16) {
    case 0: return r >> 40 & 7;                 /* 0..7, incl. malloc(0) */
    case 1: case 2: case 3: case 4: case 5: case 6: return 8 + (r >> 32) % 256;
    case 7: case 8: case 9: case 10: return 256 + (r >> 32) % 4096;
    case 11: case 12: case 13: return 4096 + (r >> 32) % 65536;
    case 14: return 65536 + (r >> 32) % (256 << 10);   /* around the mmap threshold */
    default: return (r >> 32) % (2 << 20);             /* huge */
    }
}

static int new_block(struct blk *b, uint64_t *s) {
    size_t n = pick_size(s);
    uint64_t r = rng(s);
    void *p = NULL;
    switch (r % 8) {
    case 0: {
        p = calloc(1, n);
        size_t i;
        for (i = 0; i < n; i += 97)
            if (((unsigned char *)p)[i]) { fprintf(stderr, "stress: calloc not zero\n"); abort(); }
        break;
    }
    case 1: {
        size_t al = (size_t)32 << (r >> 8) % 8;
        p = memalign(al, n);
        if (p && (uintptr_t)p % al) { fprintf(stderr, "stress: memalign misaligned\n"); abort(); }
        break;
    }
    case 2: {
        size_t al = (size_t)16 << (r >> 8) % 9;
        if (posix_memalign(&p, al, n) != 0) p = NULL;
        if (p && (uintptr_t)p % al) { fprintf(stderr, "stress: posix_memalign misaligned\n"); abort(); }
        break;
    }
    case 3: {
        size_t al = (size_t)64 << (r >> 8) % 4;
        p = aligned_alloc(al, (n + al - 1) / al * al);
        if (p && (uintptr_t)p % al) { fprintf(stderr, "stress: aligned_alloc misaligned\n"); abort(); }
        break;
    }
    default:
        p = malloc(n);
    }
    if (!p) { fprintf(stderr, "stress: allocation of %zu failed (errno %d)\n", n, errno); abort(); }
    if (malloc_usable_size(p) < n) { fprintf(stderr, "stress: usable size too small\n"); abort(); }
    b->p = p; b->n = n; b->seed = rng(s);
    fill(b);
    return 0;
}

static void send(int to, struct blk b) {
    struct mailbox *m = &boxes[to];
    pthread_mutex_lock(&m->mu);
    if (m->len < MAILBOX) { m->q[m->len++] = b; b.p = NULL; }
    pthread_mutex_unlock(&m->mu);
    if (b.p) { check(&b, "send overflow"); free(b.p); }
}

static uint64_t drain(int me) {
    struct mailbox *m = &boxes[me];
    struct blk local[MAILBOX];
    int n, i;
    uint64_t sum = 0;
    pthread_mutex_lock(&m->mu);
    n = m->len;
    memcpy(local, m->q, sizeof(struct blk) * n);
    m->len = 0;
    pthread_mutex_unlock(&m->mu);
    for (i = 0; i < n; i++) {
        check(&local[i], "cross-thread free");
        free(local[i].p);
    }
    return sum;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static uint64_t round_ops(int me, uint64_t *s, struct blk *slots) {
    uint64_t sum = 0;
    long k;
    for (k = 0; k < ops; k++) {
        uint64_t r = rng(s);
        struct blk *b = &slots[r % SLOTS];
        int action = (int)(r >> 20) % 10;
        if (!b->p) { new_block(b, s); sum += b->n; continue; }
        check(b, "op");
        if (action < 3) {                   /* realloc, keeping the common prefix */
            size_t n = pick_size(s), keep = n < b->n ? n : b->n, i;
            unsigned char *q;
            if (n == 0) n = 1;
            q = realloc(b->p, n);
            if (!q) { fprintf(stderr, "stress: realloc failed\n"); abort(); }
            for (i = 0; i < keep && i < 64; i++)
                if (q[i] != (unsigned char)((unsigned char)(b->seed * 131u) + i) && i + 1 != b->n) {
                    fprintf(stderr, "stress: realloc lost contents\n"); abort();
                }
            b->p = q; b->n = n; b->seed = rng(s); fill(b);
            sum += n;
        } else if (action < 6) {           /* cross-thread free */
            send((me + 1 + (int)(r >> 40) % (nthreads > 1 ? nthreads - 1 : 1)) % nthreads, *b);
            b->p = NULL;
        } else {
            free(b->p);
            b->p = NULL;
        }
        if ((k & 255) == 0) sum += drain(me);
    }
    return sum;
}

static void *worker(void *arg) {
    int me = (int)(intptr_t)arg, i;
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(me + 1), sum = 0;
    struct blk *slots = calloc(SLOTS, sizeof *slots);
    double end = now() + seconds;
    do {
        sum += round_ops(me, &s, slots);
        /* a short-lived helper thread: allocates, frees some of ours, exits (cache flush) */
        if (seconds > 0) {
            pthread_t t;
            extern void *helper(void *);
            pthread_create(&t, NULL, helper, NULL);
            pthread_join(t, NULL);
        }
    } while (seconds > 0 && now() < end && !stop_flag);
    for (i = 0; i < SLOTS; i++)
        if (slots[i].p) { check(&slots[i], "final"); free(slots[i].p); }
    free(slots);
    return (void *)(uintptr_t)sum;
}

void *helper(void *arg) {
    void *v[64];
    int i;
    (void)arg;
    for (i = 0; i < 64; i++) v[i] = malloc((size_t)(i * 37) % 2000 + 1);
    for (i = 0; i < 64; i += 2) free(v[i]);
    for (i = 1; i < 64; i += 2) v[i] = realloc(v[i], 3000);
    for (i = 1; i < 64; i += 2) free(v[i]);
    return NULL;
}

int main(int argc, char **argv) {
    int i;
    uint64_t total = 0;
    pthread_t *th;
    nthreads = argc > 1 ? atoi(argv[1]) : 8;
    ops = argc > 2 ? atol(argv[2]) : 100000;
    seconds = argc > 3 ? atof(argv[3]) : 0;
    boxes = calloc(nthreads, sizeof *boxes);
    th = malloc(sizeof *th * nthreads);
    for (i = 0; i < nthreads; i++) pthread_mutex_init(&boxes[i].mu, NULL);
    for (i = 0; i < nthreads; i++) pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    for (i = 0; i < nthreads; i++) {
        void *r;
        pthread_join(th[i], &r);
        total += (uint64_t)(uintptr_t)r;
    }
    for (i = 0; i < nthreads; i++) total += drain(i);
    free(th);
    free(boxes);
    printf("stress ok threads=%d ops=%ld checksum=%llu\n", nthreads, ops,
           seconds > 0 ? 0ull : (unsigned long long)total);
    return 0;
}
