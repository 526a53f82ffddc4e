/* Shared helpers for the C workloads: a seeded PRNG, a monotonic clock, argument
 * parsing and the RESULT line that the `compare` driver parses.
 *
 * Every workload takes `<scale> [threads]` and prints
 *     RESULT time_s=<seconds> checksum=<u64> rss_end_kib=<KiB>
 * The checksum is the same for every allocator (the driver checks that); rss_end_kib is the
 * process's VmRSS when report() is called, after the workload freed its memory (left out when
 * /proc/self/status cannot be read). */
#ifndef ARENA_BENCH_COMMON_H
#define ARENA_BENCH_COMMON_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* VmRSS from /proc/self/status in KiB, or -1. Reads with open/read into a static buffer, so
 * that measuring allocates nothing (stdio would malloc its buffer). */
static inline long vm_rss_kib(void) {
    static char buf[8192];
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0) return -1;
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)n;
    close(fd);
    buf[len] = 0;
    const char *p = strstr(buf, "VmRSS:");
    return p ? strtol(p + 6, NULL, 10) : -1;
}

/* Call once the workload has freed its memory (and joined its threads). */
static inline void report(double t0, uint64_t checksum) {
    double t = now_s() - t0;
    long rss = vm_rss_kib();
    if (rss >= 0)
        printf("RESULT time_s=%.6f checksum=%llu rss_end_kib=%ld\n", t, (unsigned long long)checksum, rss);
    else
        printf("RESULT time_s=%.6f checksum=%llu\n", t, (unsigned long long)checksum);
}

#endif
