// bench/net's traffic, in C so that the client is not what limits the rate.
//   netecho server PORT
//       echoes every UDP datagram back to its sender (the floor's far end)
//   netecho client ADDRESS PORT SIZE SECONDS WINDOW
//       keeps WINDOW datagrams of SIZE bytes in flight to ADDRESS:PORT for SECONDS, each reply
//       sending the next (a window lost for 20 ms is sent again), and prints one JSON line:
//       replies per second, echoed payload in Mbit/s, datagrams sent and lost.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int server(int port) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof address) < 0) { perror("netecho: bind"); return 1; }
    enum { batch = 64 };
    static char buffers[batch][2048];
    struct mmsghdr messages[batch];
    struct iovec vectors[batch];
    struct sockaddr_in peers[batch];
    for (;;) {
        for (int i = 0; i < batch; i++) {
            vectors[i] = (struct iovec){buffers[i], sizeof buffers[i]};
            messages[i].msg_hdr = (struct msghdr){.msg_name = &peers[i], .msg_namelen = sizeof peers[i], .msg_iov = &vectors[i], .msg_iovlen = 1};
        }
        int got = recvmmsg(fd, messages, batch, MSG_WAITFORONE, NULL);
        if (got <= 0) continue;
        for (int i = 0; i < got; i++) vectors[i].iov_len = messages[i].msg_len;
        sendmmsg(fd, messages, got, 0);
    }
}

static int client(const char *host, int port, int size, double seconds, int window) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &address.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof address) < 0) { perror("netecho: connect"); return 1; }
    char payload[2048] = {0}, reply[2048];
    uint64_t sent = 0, received = 0, bytes = 0;
    double start = now(), end = start + seconds;
    for (int i = 0; i < window; i++, sent++) send(fd, payload, size, 0);
    while (now() < end) {
        struct pollfd ready = {fd, POLLIN, 0};
        if (poll(&ready, 1, 20) <= 0) {  // the window was lost: send it again
            for (int i = 0; i < window; i++, sent++) send(fd, payload, size, 0);
            continue;
        }
        ssize_t n;
        while ((n = recv(fd, reply, sizeof reply, MSG_DONTWAIT)) > 0) {
            received++;
            bytes += n;
            if (now() < end) { send(fd, payload, size, 0); sent++; }
        }
    }
    double elapsed = now() - start;
    struct pollfd ready = {fd, POLLIN, 0};
    while (poll(&ready, 1, 200) > 0 && recv(fd, reply, sizeof reply, 0) > 0) received++;
    printf("{\"pps\": %.0f, \"mbps\": %.1f, \"sent\": %llu, \"lost\": %lld}\n", received / elapsed, bytes * 8 / elapsed / 1e6,
           (unsigned long long)sent, (long long)(sent - received));
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "server") == 0) return server(atoi(argv[2]));
    if (argc == 7 && strcmp(argv[1], "client") == 0) return client(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]), atoi(argv[6]));
    fprintf(stderr, "usage: netecho server PORT | netecho client ADDRESS PORT SIZE SECONDS WINDOW\n");
    return 2;
}
