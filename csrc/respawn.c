/* Workers that are replaced while their data lives on (mimalloc-bench's larson shape): the main
 * thread builds each lane's table of blocks (8 B-1 KiB), then stays alive, idle; each lane's
 * worker replaces random slots of its table (free the old block, malloc one of a new size,
 * write its first bytes) for a while and exits, and a new worker takes the table over. So
 * most frees are of blocks another thread allocated: first the idle main thread, then the
 * worker before.
 *
 * usage: respawn <scale> [lanes, default 2] */
#include <pthread.h>

#include "common.h"

#define SLOTS 5000
#define GEN_OPS 250000

struct lane {
    unsigned char *slot[SLOTS];
    size_t size[SLOTS];
    rng_t r;
    size_t ops;
    uint64_t sum;
};

static size_t pick(rng_t *r) { return rng_range(r, 8, 1000); }

static void *worker(void *arg) {
    struct lane *l = arg;
    size_t n = l->ops < GEN_OPS ? l->ops : GEN_OPS;
    uint64_t sum = 0;
    for (size_t k = 0; k < n; k++) {
        size_t i = rng_below(&l->r, SLOTS);
        sum += l->slot[i][0] + l->slot[i][l->size[i] - 1];
        free(l->slot[i]);
        size_t sz = pick(&l->r);
        unsigned char *p = malloc(sz);
        if (!p) die("malloc failed");
        p[0] = (unsigned char)sz;
        p[sz - 1] = (unsigned char)(sz >> 3);
        l->slot[i] = p;
        l->size[i] = sz;
    }
    l->ops -= n;
    l->sum += sum;
    return NULL;
}

int main(int argc, char **argv) {
    size_t total = scaled(argc, argv, 8000000.0);
    int nl = threads_arg(argc, argv, 2);
    if (nl > 64) nl = 64;
    struct lane *lanes = calloc((size_t)nl, sizeof *lanes);
    if (!lanes) die("calloc failed");
    for (int t = 0; t < nl; t++) {
        struct lane *l = &lanes[t];
        l->r = rng_new(700 + (uint64_t)t);
        l->ops = total / (size_t)nl;
        for (size_t i = 0; i < SLOTS; i++) {
            size_t sz = pick(&l->r);
            l->slot[i] = malloc(sz);
            if (!l->slot[i]) die("malloc failed");
            l->slot[i][0] = (unsigned char)sz;
            l->slot[i][sz - 1] = (unsigned char)(sz >> 3);
            l->size[i] = sz;
        }
    }
    double t0 = now_s();
    pthread_t th[64];
    int running[64];
    for (;;) {
        int started = 0;
        for (int t = 0; t < nl; t++) {
            running[t] = lanes[t].ops > 0;
            if (running[t] && pthread_create(&th[t], NULL, worker, &lanes[t])) die("pthread_create failed");
            started += running[t];
        }
        if (!started) break;
        for (int t = 0; t < nl; t++)
            if (running[t]) pthread_join(th[t], NULL);
    }
    uint64_t sum = 0;
    for (int t = 0; t < nl; t++) {
        for (size_t i = 0; i < SLOTS; i++) free(lanes[t].slot[i]);
        sum += lanes[t].sum;
    }
    free(lanes);
    report(t0, sum);
    return 0;
}
