// bench/diskfloor.c: the host's floor for bench/disk. The same requests the built-in guest
// makes (queue depth 1): 4 KiB at random 4 KiB-aligned places, or 1 MiB in order, read or
// written with pread/pwrite on the same file, for SECONDS; prints requests per second.
// Usage: diskfloor FILE randread|randwrite|seqread|seqwrite SECONDS direct|cached
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: diskfloor FILE randread|randwrite|seqread|seqwrite SECONDS direct|cached\n");
        return 2;
    }
    const char *mode = argv[2];
    int writing = strstr(mode, "write") != NULL, random = strncmp(mode, "rand", 4) == 0;
    double seconds = atof(argv[3]);
    int fd = open(argv[1], O_RDWR | (strcmp(argv[4], "direct") == 0 ? O_DIRECT : 0));
    if (fd < 0) { perror(argv[1]); return 1; }
    struct stat info;
    fstat(fd, &info);
    size_t size = random ? 4096 : 1 << 20;
    uint64_t units = info.st_size / size;
    if (units == 0) { fprintf(stderr, "%s: too small\n", argv[1]); return 1; }
    void *buffer;
    if (posix_memalign(&buffer, 4096, size) != 0) return 1;
    memset(buffer, 0x5a, size);
    uint64_t state = 0x2545F4914F6CDD1Dull, done = 0;
    double start = now(), end = start + seconds;
    while (now() < end) {
        for (int i = 0; i < 16; i++) {
            uint64_t unit;
            if (random) {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                unit = state % units;
            } else {
                unit = done % units;
            }
            ssize_t n = writing ? pwrite(fd, buffer, size, unit * size) : pread(fd, buffer, size, unit * size);
            if (n != (ssize_t)size) { perror("I/O"); return 1; }
            done++;
        }
    }
    printf("%.0f\n", done / (now() - start));
    return 0;
}
