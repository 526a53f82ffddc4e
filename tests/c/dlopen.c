/* Loads the allocator library with dlopen (no LD_PRELOAD), takes its malloc and free with
 * dlsym and uses them from the main thread, from a thread that existed before the dlopen, and
 * from threads started after it: the library's initial-exec TLS slot must be there, and
 * separate, in every one of them. The process's own malloc stays glibc's (RTLD_LOCAL).
 *
 * usage: dlopen <path of libarena_malloc.so>
 * prints "dlopen ok blocks=<n> bad=0" on success. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef void *(*malloc_fn)(size_t);
typedef void (*free_fn)(void *);

static malloc_fn am_malloc;
static free_fn am_free;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int loaded;
static long bad, blocks;

#define N 2000

/* The size of block i in a round: 1 to 700 bytes, different per thread and round. */
static size_t block_size(int i, int seed, int round) {
    return 1 + (size_t)((i * 37 + seed * 11 + round) % 700);
}

/* Allocates N blocks of varied sizes, fills each with its own pattern, checks them all, frees
 * them (in allocation order on even rounds, in reverse on odd ones), and counts mismatches. */
static void work(int seed) {
    static __thread unsigned char *p[N];
    long my_bad = 0;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < N; i++) {
            size_t n = block_size(i, seed, round);
            p[i] = am_malloc(n);
            if (!p[i]) { my_bad++; continue; }
            memset(p[i], (seed + i) & 0xff, n);
        }
        for (int i = 0; i < N; i++) {
            size_t n = block_size(i, seed, round);
            if (p[i] && (p[i][0] != ((seed + i) & 0xff) || p[i][n - 1] != ((seed + i) & 0xff)))
                my_bad++;
        }
        if (round & 1)
            for (int i = N - 1; i >= 0; i--) am_free(p[i]);
        else
            for (int i = 0; i < N; i++) am_free(p[i]);
    }
    pthread_mutex_lock(&mu);
    bad += my_bad;
    blocks += 20 * N;
    pthread_mutex_unlock(&mu);
}

static void *early_thread(void *arg) {
    pthread_mutex_lock(&mu);
    while (!loaded) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    work((int)(intptr_t)arg);
    return NULL;
}

static void *late_thread(void *arg) {
    work((int)(intptr_t)arg);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: dlopen <lib>\n"); return 2; }
    pthread_t early;
    pthread_create(&early, NULL, early_thread, (void *)(intptr_t)1);
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "dlopen failed: %s\n", dlerror()); return 1; }
    am_malloc = (malloc_fn)dlsym(h, "malloc");
    am_free = (free_fn)dlsym(h, "free");
    if (!am_malloc || !am_free) { fprintf(stderr, "dlsym failed\n"); return 1; }
    pthread_mutex_lock(&mu);
    loaded = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    pthread_t late[4];
    for (int t = 0; t < 4; t++) pthread_create(&late[t], NULL, late_thread, (void *)(intptr_t)(t + 2));
    work(0);
    pthread_join(early, NULL);
    for (int t = 0; t < 4; t++) pthread_join(late[t], NULL);
    printf("dlopen ok blocks=%ld bad=%ld\n", blocks, bad);
    return bad != 0;
}
