/* Single-threaded tiny blocks with short, nested lifetimes (cfrac and espresso in spirit):
 * big-number-like values of 8-96 B built and dropped in expression order, a few longer-lived
 * ones kept in a small table, and lists of 16-32 B cells built and torn down.
 *
 * usage: tiny <scale> */
#include <string.h>

#include "common.h"

#define KEEP 512

struct cell {
    struct cell *next;
    uint64_t v;
};

int main(int argc, char **argv) {
    size_t steps = scaled(argc, argv, 2500000.0);
    static uint64_t *keep[KEEP];
    rng_t r = rng_new(77);
    uint64_t sum = 0;
    double t0 = now_s();
    for (size_t k = 0; k < steps; k++) {
        /* a = f(b, c): two temporaries and a result; the temporaries die at once */
        size_t na = rng_range(&r, 1, 12), nb = rng_range(&r, 1, 12);
        uint64_t *a = malloc(na * 8), *b = malloc(nb * 8);
        if (!a || !b) die("malloc failed");
        for (size_t i = 0; i < na; i++) a[i] = k + i;
        for (size_t i = 0; i < nb; i++) b[i] = k ^ i;
        size_t nc = na > nb ? na : nb;
        uint64_t *c = malloc(nc * 8 + 8);
        if (!c) die("malloc failed");
        c[0] = nc;
        for (size_t i = 0; i < nc; i++) c[i + 1] = (i < na ? a[i] : 0) + (i < nb ? b[i] : 0);
        free(b);
        free(a);
        size_t slot = rng_below(&r, KEEP);
        if (keep[slot]) {
            sum += keep[slot][keep[slot][0]];
            free(keep[slot]);
        }
        keep[slot] = c;
        if (k % 64 == 0) {
            struct cell *head = NULL;
            size_t n = rng_range(&r, 8, 64);
            for (size_t i = 0; i < n; i++) {
                struct cell *e = malloc(rng_below(&r, 2) ? sizeof *e : sizeof *e + 16);
                if (!e) die("malloc failed");
                e->next = head;
                e->v = i;
                head = e;
            }
            while (head) {
                struct cell *e = head;
                sum += e->v;
                head = e->next;
                free(e);
            }
        }
    }
    for (size_t i = 0; i < KEEP; i++) free(keep[i]);
    report(t0, sum);
    return 0;
}
