/* Blocks of 5-25 MiB: 20 slots, each step replaces a random slot's block with a new one of a
 * random size and writes it whole (as a clearing `new char[n]()` does), so an
 * allocator that unmaps each freed block and maps a fresh one pays a page fault for every
 * page, every time; one that keeps recently freed large blocks does not.
 *
 * usage: large <scale> */
#include <string.h>

#include "common.h"

#define SLOTS 20

int main(int argc, char **argv) {
    size_t steps = scaled(argc, argv, 400.0);
    static unsigned char *slot[SLOTS];
    static size_t size[SLOTS];
    rng_t r = rng_new(5);
    uint64_t sum = 0;
    double t0 = now_s();
    for (size_t k = 0; k < steps; k++) {
        size_t i = rng_below(&r, SLOTS);
        if (slot[i]) {
            sum += slot[i][size[i] / 2] + size[i];
            free(slot[i]);
        }
        size_t n = rng_range(&r, 5u << 20, 25u << 20);
        unsigned char *p = malloc(n);
        if (!p) die("malloc failed");
        memset(p, 1, n); /* not 0: the compiler would make malloc+memset a calloc */
        p[n / 2] = (unsigned char)k;
        slot[i] = p;
        size[i] = n;
    }
    for (size_t i = 0; i < SLOTS; i++) free(slot[i]);
    report(t0, sum);
    return 0;
}
