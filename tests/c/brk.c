/* Prints whether a small malloc'd block lies in the [heap] mapping (the program break).
 * Output: "small in [heap]: yes|no" and "break moved: yes|no". */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    void *brk0 = sbrk(0);
    char *p = malloc(40);
    uintptr_t a = (uintptr_t)p;
    char line[512];
    int in_heap = 0;
    FILE *f;
    /* A second batch, so the arena has grown past its first step. */
    void *v[4000];
    for (int i = 0; i < 4000; i++) v[i] = malloc(200);
    void *brk1 = sbrk(0);
    f = fopen("/proc/self/maps", "r");
    if (!f) return 2;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (strstr(line, "[heap]") && sscanf(line, "%lx-%lx", &lo, &hi) == 2 && a >= lo && a < hi)
            in_heap = 1;
    }
    fclose(f);
    for (int i = 0; i < 4000; i++) free(v[i]);
    free(p);
    printf("small in [heap]: %s\n", in_heap ? "yes" : "no");
    printf("break moved: %s\n", brk1 != brk0 ? "yes" : "no");
    return 0;
}
