/* Shared helpers for the C workloads: a seeded PRNG, a monotonic clock, argument
 * parsing and the RESULT line that the `compare` driver parses.
 *
 * Every workload takes `<scale> [threads]` and prints
 *     RESULT time_s=<seconds> checksum=<u64>
 * The checksum is the same for every allocator (the driver checks that). */
#ifndef ARENA_BENCH_COMMON_H
#define ARENA_BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* SplitMix64, as in bench/src/rng.rs. */
typedef struct { uint64_t s; } rng_t;

static inline rng_t rng_new(uint64_t seed) { rng_t r = { seed ^ 0x9E3779B97F4A7C15ull }; return r; }

static inline uint64_t rng_next(rng_t *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A value in [0, n). */
static inline size_t rng_below(rng_t *r, size_t n) {
    return (size_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* A value in [lo, hi). */
static inline size_t rng_range(rng_t *r, size_t lo, size_t hi) { return lo + rng_below(r, hi - lo); }

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* `base` times the scale given as argv[1] (default 1.0), at least 1. */
static inline size_t scaled(int argc, char **argv, double base) {
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    double n = base * scale;
    return n < 1.0 ? 1 : (size_t)n;
}

/* argv[2] as a thread count, or `dflt`. */
static inline int threads_arg(int argc, char **argv, int dflt) {
    int t = argc > 2 ? atoi(argv[2]) : dflt;
    return t > 0 ? t : dflt;
}

static inline void die(const char *what) {
    fprintf(stderr, "fatal: %s\n", what);
    exit(1);
}

static inline void report(double t0, uint64_t checksum) {
    printf("RESULT time_s=%.6f checksum=%llu\n", now_s() - t0, (unsigned long long)checksum);
}

#endif
