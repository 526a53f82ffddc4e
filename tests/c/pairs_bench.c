/* Micro-benchmark for the cost of free/pop validation: THREADS threads each do ITERS rounds of
 * 100 mallocs (16..515 bytes) and 100 frees. usage: pairs_bench THREADS ITERS; prints seconds.
 * See docs/c-api.md, "Cost of the checks". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static long iters;
static void *run(void *a) {
    void *v[100];
    unsigned s = 1 + (unsigned)(size_t)a;
    for (long k = 0; k < iters; k++) {
        for (int i = 0; i < 100; i++) { s = s * 1103515245u + 12345u; v[i] = malloc(16 + (s >> 16) % 500); *(char *)v[i] = 1; }
        for (int i = 0; i < 100; i++) free(v[i]);
    }
    return 0;
}
int main(int c, char **v) {
    int n = atoi(v[1]); iters = atol(v[2]);
    struct timespec a, b; pthread_t t[16];
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) pthread_create(&t[i], 0, run, (void *)(size_t)i);
    for (int i = 0; i < n; i++) pthread_join(t[i], 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.3f\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
}
