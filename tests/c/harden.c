/* Misuse from C under LD_PRELOAD; argv[1] names the case. Each must abort with a message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    if (!strcmp(c, "double_free")) {
        char *p = malloc(24);
        free(p);
        free(p);
    } else if (!strcmp(c, "stack")) {
        _Alignas(16) char buf[128];
        memset(buf, 0, sizeof buf);
        free(buf + 32);
    } else if (!strcmp(c, "overflow")) {
        char *v[16];
        size_t n;
        int i, j;
        for (i = 0; i < 16; i++) v[i] = malloc(40);
        n = malloc_usable_size(v[0]);
        for (i = 0; i < 16; i++)
            for (j = 0; j < 16; j++)
                if ((uintptr_t)v[j] == (uintptr_t)v[i] + n + 16) {
                    memset(v[i], 'A', n + 16);
                    free(v[j]);
                    return 0;
                }
        return 2;
    } else if (!strcmp(c, "uaf_write")) {
        char *a = malloc(64), *b = malloc(64);
        free(a);
        free(b);
        strcpy(b, "use after free");
        a = malloc(64);
        b = malloc(64);
    } else if (!strcmp(c, "realloc_freed")) {
        char *p = malloc(100000);
        free(p);
        p = realloc(p, 200000);
    }
    return 0;
}
