/* fork while other threads allocate: the child must be able to allocate at once (no lock
 * left held by a thread that does not exist in it) and must get back the memory cached by
 * those threads. usage: fork THREADS FORKS */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int stop;

static void *churn(void *arg) {
    uint64_t s = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    void *v[256] = {0};
    while (!stop) {
        int i;
        for (i = 0; i < 256; i++) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            free(v[i]);
            v[i] = malloc(s % 5 == 0 ? s % 300000 : s % 2048);
            if (v[i]) memset(v[i], 1, 16);
        }
    }
    for (int i = 0; i < 256; i++) free(v[i]);
    return NULL;
}

int main(int argc, char **argv) {
    int nthreads = argc > 1 ? atoi(argv[1]) : 4;
    int forks = argc > 2 ? atoi(argv[2]) : 200;
    pthread_t th[64];
    int i, bad = 0;
    for (i = 0; i < nthreads; i++) pthread_create(&th[i], NULL, churn, (void *)(uintptr_t)(i + 1));
    for (i = 0; i < forks; i++) {
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 2; }
        if (pid == 0) {
            /* child: allocate a lot, from this thread and a new one, then exit */
            void *v[1000];
            int k;
            for (k = 0; k < 1000; k++) { v[k] = malloc((size_t)k * 17 % 4000 + 1); if (!v[k]) _exit(3); }
            for (k = 0; k < 1000; k++) free(v[k]);
            void *big = malloc(1 << 20);
            if (!big) _exit(4);
            memset(big, 2, 1 << 20);
            free(big);
            pthread_t t;
            if (pthread_create(&t, NULL, churn, (void *)7) != 0) _exit(5);
            stop = 1;
            pthread_join(t, NULL);
            _exit(0);
        }
        int st;
        if (waitpid(pid, &st, 0) != pid) { perror("waitpid"); return 2; }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "fork %d: child status %#x\n", i, st);
            bad++;
        }
    }
    stop = 1;
    for (i = 0; i < nthreads; i++) pthread_join(th[i], NULL);
    printf("fork ok forks=%d bad=%d\n", forks, bad);
    return bad != 0;
}
