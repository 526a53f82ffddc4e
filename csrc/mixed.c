/* Single-threaded mixed-size workload over the whole C malloc API (espresso/cfrac in
 * spirit): a table of live blocks where each step mallocs, frees, reallocs (growing
 * and shrinking, checking that contents survive), callocs (checking zeroes), strdups,
 * or takes an aligned block (posix_memalign, aligned_alloc, memalign); plus linked
 * lists of small nodes built and torn down. Sizes: mostly 8-256 B, some up to 4 KiB,
 * a few 16-512 KiB.
 *
 * A calloc that returns dirty memory or a realloc that loses bytes changes the
 * checksum, which the driver compares across allocators.
 *
 * usage: mixed <scale> */
#include <malloc.h>
#include <string.h>

#include "common.h"

#define LIVE 16384

struct blk {
    unsigned char *p;
    size_t size;
};

struct node {
    struct node *next;
    uint64_t value;
    char name[24];
};

static size_t pick_size(rng_t *r) {
    size_t p = rng_below(r, 1000);
    if (p < 3) return rng_range(r, 16 << 10, 512 << 10);
    if (p < 150) return rng_range(r, 256, 4096);
    return rng_range(r, 8, 256);
}

static size_t stamp_len(size_t size) { return size - 1 < 32 ? size - 1 : 32; }

/* Fills the first bytes (at most 32, never the last) and the last byte of a block with a
 * pattern derived from its size. */
static void stamp(struct blk *b) {
    size_t n = stamp_len(b->size);
    memset(b->p, (int)(b->size & 0xff), n);
    b->p[b->size - 1] = (unsigned char)(b->size * 7);
}

static uint64_t check_stamp(const unsigned char *p, size_t old_size, size_t new_size) {
    size_t n = stamp_len(old_size);
    if (n > new_size) n = new_size;
    uint64_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += p[i] != (unsigned char)(old_size & 0xff);
    return bad;
}

int main(int argc, char **argv) {
    size_t steps = scaled(argc, argv, 1500000.0);
    static struct blk live[LIVE];
    rng_t r = rng_new(8000);
    uint64_t sum = 0, bad_realloc = 0, bad_calloc = 0, bad_align = 0, bad_usable = 0;
    double t0 = now_s();
    for (size_t i = 0; i < steps; i++) {
        struct blk *b = &live[rng_below(&r, LIVE)];
        size_t op = rng_below(&r, 100);
        if (b->p && op < 15) {
            /* realloc, growing or shrinking */
            size_t ns = rng_below(&r, 2) ? b->size + rng_range(&r, 1, b->size + 64) : rng_range(&r, 1, b->size + 1);
            unsigned char *np = realloc(b->p, ns);
            if (!np) die("realloc returned NULL");
            bad_realloc += check_stamp(np, b->size, ns);
            b->p = np;
            b->size = ns;
            stamp(b);
            continue;
        }
        if (b->p) {
            sum += b->size + b->p[b->size - 1];
            free(b->p);
            b->p = NULL;
        }
        if (op < 60) {
            b->size = pick_size(&r);
            b->p = malloc(b->size);
        } else if (op < 75) {
            size_t n = rng_range(&r, 1, 64), each = rng_range(&r, 1, 64);
            b->size = n * each;
            b->p = calloc(n, each);
            if (!b->p) die("calloc returned NULL");
            for (size_t k = 0; k < b->size; k += 7) bad_calloc += b->p[k] != 0;
        } else if (op < 85) {
            char text[96];
            int len = snprintf(text, sizeof text, "symbol-%zu-%llu", i, (unsigned long long)rng_next(&r));
            b->p = (unsigned char *)strdup(text);
            b->size = (size_t)len + 1;
        } else if (op < 95) {
            size_t align = (size_t)16 << rng_below(&r, 9); /* 16 B .. 4 KiB */
            b->size = pick_size(&r);
            void *p = NULL;
            switch (rng_below(&r, 3)) {
            case 0:
                if (posix_memalign(&p, align, b->size) != 0) p = NULL;
                break;
            case 1:
                p = aligned_alloc(align, (b->size + align - 1) / align * align);
                break;
            default:
                p = memalign(align, b->size);
            }
            if (!p) die("aligned allocation returned NULL");
            bad_align += ((uintptr_t)p & (align - 1)) != 0;
            b->p = p;
        } else {
            /* a linked list built and torn down */
            struct node *head = NULL;
            size_t n = rng_range(&r, 10, 100);
            for (size_t k = 0; k < n; k++) {
                struct node *nd = malloc(sizeof *nd);
                if (!nd) die("malloc returned NULL");
                nd->next = head;
                nd->value = k * i;
                snprintf(nd->name, sizeof nd->name, "n%zu", k);
                head = nd;
            }
            while (head) {
                struct node *next = head->next;
                sum += head->value + (unsigned char)head->name[1];
                free(head);
                head = next;
            }
            continue;
        }
        if (!b->p) die("allocation returned NULL");
        bad_usable += malloc_usable_size(b->p) < b->size;
        stamp(b);
    }
    for (size_t i = 0; i < LIVE; i++) free(live[i].p);
    uint64_t bad = bad_realloc + bad_calloc + bad_align + bad_usable;
    if (bad)
        fprintf(stderr, "mixed: failed checks: %llu bytes lost by realloc, %llu dirty calloc bytes, %llu misaligned, %llu short usable sizes\n",
                (unsigned long long)bad_realloc, (unsigned long long)bad_calloc, (unsigned long long)bad_align, (unsigned long long)bad_usable);
    report(t0, sum * 31 + bad);
    return 0;
}
