/* Producer/consumer under the process's C malloc (xmalloc-test in spirit): producers
 * malloc batches of blocks (16 B-2 KiB) and push them on a bounded queue; consumers pop
 * them, read them and free every block, so every free is remote.
 *
 * usage: prodcons <scale> [pairs=4] */
#include <pthread.h>
#include <string.h>

#include "common.h"

#define QUEUE 8
#define BATCH 512

struct batch {
    size_t len;
    unsigned char *blocks[BATCH];
    size_t sizes[BATCH];
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    struct batch *items[QUEUE];
    size_t head, count;
    int producers_left;
} q = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0, 0 };

static size_t batches_per_producer;

static void push(struct batch *b) {
    pthread_mutex_lock(&q.lock);
    while (q.count == QUEUE) pthread_cond_wait(&q.not_full, &q.lock);
    q.items[(q.head + q.count++) % QUEUE] = b;
    pthread_cond_signal(&q.not_empty);
    pthread_mutex_unlock(&q.lock);
}

/* NULL once every producer is done and the queue is empty. */
static struct batch *pop(void) {
    pthread_mutex_lock(&q.lock);
    while (q.count == 0 && q.producers_left > 0) pthread_cond_wait(&q.not_empty, &q.lock);
    struct batch *b = NULL;
    if (q.count > 0) {
        b = q.items[q.head];
        q.head = (q.head + 1) % QUEUE;
        q.count--;
        pthread_cond_signal(&q.not_full);
    }
    pthread_mutex_unlock(&q.lock);
    return b;
}

static void *producer(void *arg) {
    rng_t r = rng_new(9000 + (uint64_t)(uintptr_t)arg);
    for (size_t i = 0; i < batches_per_producer; i++) {
        struct batch *b = malloc(sizeof *b);
        if (!b) die("malloc returned NULL");
        b->len = rng_range(&r, BATCH / 2, BATCH + 1);
        for (size_t k = 0; k < b->len; k++) {
            size_t size = rng_below(&r, 8) == 0 ? rng_range(&r, 256, 2048) : rng_range(&r, 16, 256);
            unsigned char *p = malloc(size);
            if (!p) die("malloc returned NULL");
            p[0] = (unsigned char)k;
            p[size - 1] = (unsigned char)size;
            b->blocks[k] = p;
            b->sizes[k] = size;
        }
        push(b);
    }
    pthread_mutex_lock(&q.lock);
    q.producers_left--;
    pthread_cond_broadcast(&q.not_empty);
    pthread_mutex_unlock(&q.lock);
    return NULL;
}

static void *consumer(void *arg) {
    (void)arg;
    uint64_t sum = 0;
    struct batch *b;
    while ((b = pop()) != NULL) {
        for (size_t k = 0; k < b->len; k++) {
            sum += b->blocks[k][0] + b->blocks[k][b->sizes[k] - 1] + b->sizes[k];
            free(b->blocks[k]);
        }
        free(b);
    }
    return (void *)(uintptr_t)sum;
}

int main(int argc, char **argv) {
    int pairs = threads_arg(argc, argv, 4);
    if (pairs > 64) pairs = 64;
    batches_per_producer = scaled(argc, argv, 12000.0) / (size_t)pairs;
    q.producers_left = pairs;
    double t0 = now_s();
    pthread_t prod[64], cons[64];
    for (int i = 0; i < pairs; i++) {
        if (pthread_create(&cons[i], NULL, consumer, NULL) != 0) die("pthread_create");
        if (pthread_create(&prod[i], NULL, producer, (void *)(uintptr_t)i) != 0) die("pthread_create");
    }
    uint64_t sum = 0;
    for (int i = 0; i < pairs; i++) pthread_join(prod[i], NULL);
    for (int i = 0; i < pairs; i++) {
        void *ret;
        pthread_join(cons[i], &ret);
        sum += (uint64_t)(uintptr_t)ret;
    }
    report(t0, sum);
    return 0;
}
