/* Early and odd callers: allocation in a library constructor (before main, before any thread
 * cache), from dlsym/dlerror, in TLS set-up of a new thread (__thread objects and
 * pthread_getspecific second-level blocks), from a pthread key destructor that runs after the
 * allocator's own thread-exit flush (keys made after the allocator's), from a C11
 * thread_local-style destructor via __cxa_thread_atexit_impl, and from an atexit handler.
 * Prints "early ok" and a count of destructor allocations. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *from_ctor;
static int dtor_allocs;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t keys[40];

__attribute__((constructor(101))) static void early_ctor(void) {
    from_ctor = malloc(100);
    strcpy(from_ctor, "constructor");
    void *q = calloc(10, 1000);
    q = realloc(q, 50000);
    free(q);
}

static void key_dtor(void *arg) {
    /* Runs after the allocator's cache was flushed for keys made later than its own. */
    free(arg);
    void *v[50];
    for (int i = 0; i < 50; i++) v[i] = malloc((size_t)i * 40 + 1);
    for (int i = 0; i < 50; i++) free(v[i]);
    char *s = strdup("destructor");
    free(s);
    pthread_mutex_lock(&mu);
    dtor_allocs++;
    pthread_mutex_unlock(&mu);
}

extern int __cxa_thread_atexit_impl(void (*)(void *), void *, void *);
extern void *__dso_handle;

static void tls_dtor(void *arg) {
    free(arg);
    free(malloc(123));
}

static __thread char tls_buf[4096];

static void *thread_main(void *arg) {
    (void)arg;
    tls_buf[0] = 1;
    for (int k = 0; k < 40; k++) pthread_setspecific(keys[k], malloc(64));
    __cxa_thread_atexit_impl(tls_dtor, malloc(32), &__dso_handle);
    /* dlsym from a thread: dlerror's per-thread buffer is malloc'd */
    void *h = dlopen(NULL, RTLD_NOW);
    if (!dlsym(h, "no_such_symbol_here")) (void)dlerror();
    dlclose(h);
    void *p = malloc(1000);
    free(p);
    return NULL;
}

static void at_exit(void) {
    free(malloc(77));
    free(from_ctor);
}

int main(void) {
    if (!from_ctor || strcmp(from_ctor, "constructor") != 0) return 2;
    void *h = dlopen("libm.so.6", RTLD_NOW);
    if (h) {
        double (*cosp)(double) = (double (*)(double))dlsym(h, "cos");
        if (!cosp || cosp(0.0) != 1.0) return 3;
    }
    for (int k = 0; k < 40; k++) pthread_key_create(&keys[k], key_dtor);
    atexit(at_exit);
    for (int round = 0; round < 20; round++) {
        pthread_t t[8];
        for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, thread_main, NULL);
        for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    }
    if (h) dlclose(h);
    printf("early ok dtor_allocs=%d\n", dtor_allocs);
    return 0;
}
