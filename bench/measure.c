// measure.c: process timing for bench/run, on CLOCK_MONOTONIC (no python needed).
//
//   measure [-t SECONDS] [-l LOGFILE] wall -- COMMAND [ARG...]
//       Spawns COMMAND (stdout and stderr to LOGFILE, default /dev/null), waits for it and
//       prints "<nanoseconds from spawn to exit> <exit status>" (status 128+N: killed by signal N).
//
//   measure [-t SECONDS] [-l LOGFILE] first-line [-m TEXT] -- COMMAND [ARG...]
//       Spawns COMMAND with stdout on a pipe (stderr to LOGFILE), waits for the first line
//       it writes (with -m: the first line containing TEXT), prints
//       "<nanoseconds from spawn to that line> <the line>", then ends COMMAND with SIGTERM
//       (SIGKILL after 5 s) and reaps it.
//
// The clock starts right before posix_spawn, so the figures include fork/exec and the
// dynamic loader. After -t SECONDS (default 60) the child is killed and measure fails.
// Exit status: 0 on success, 1 on any failure (message on stderr).
//
// Build: clang -O2 -o measure measure.c

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static volatile pid_t child = -1;
static volatile sig_atomic_t timed_out = 0;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_alarm(int sig) {
    (void)sig;
    timed_out = 1;
    if (child > 0) kill(child, SIGKILL);
}

static void on_term(int sig) {
    if (child > 0) {
        kill(child, SIGKILL);
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {}  // reap it: leave no zombie
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static int usage(void) {
    fprintf(stderr, "usage: measure [-t SECONDS] [-l LOGFILE] wall -- COMMAND [ARG...]\n"
                    "       measure [-t SECONDS] [-l LOGFILE] first-line [-m TEXT] -- COMMAND [ARG...]\n");
    return 1;
}

static int wait_child(void) {
    int status;
    for (;;) {
        pid_t r = waitpid(child, &status, 0);
        if (r == child) break;
        if (r < 0 && errno == EINTR) continue;
        perror("measure: waitpid");
        return -1;
    }
    child = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv) {
    int timeout = 60;
    const char *logfile = "/dev/null";
    const char *match = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i += 2) {
        if (i + 1 >= argc) return usage();
        if (strcmp(argv[i], "-t") == 0) timeout = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-l") == 0) logfile = argv[i + 1];
        else return usage();
    }
    if (i >= argc) return usage();
    const char *mode = argv[i++];
    int first_line = strcmp(mode, "first-line") == 0;
    if (!first_line && strcmp(mode, "wall") != 0) return usage();
    if (first_line && i + 1 < argc && strcmp(argv[i], "-m") == 0) {
        match = argv[i + 1];
        i += 2;
    }
    if (i >= argc || strcmp(argv[i], "--") != 0 || i + 1 >= argc) return usage();
    char **command = argv + i + 1;

    int logfd = open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) {
        perror(logfile);
        return 1;
    }
    int pipefd[2] = {-1, -1};
    if (first_line && pipe2(pipefd, O_CLOEXEC) < 0) {
        perror("measure: pipe");
        return 1;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, first_line ? pipefd[1] : logfd, 1);
    posix_spawn_file_actions_adddup2(&actions, logfd, 2);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);

    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;  // no SA_RESTART: a blocked read()/waitpid() must return
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGHUP, on_term);
    signal(SIGPIPE, SIG_IGN);

    // The child gets default dispositions and an empty mask, whatever this process inherited
    // (bash starts background jobs with SIGINT ignored; SIGPIPE is ignored here).
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t defaults, empty;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGQUIT);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGHUP);
    sigemptyset(&empty);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

    uint64_t start = now_ns();
    pid_t pid;
    int err = posix_spawnp(&pid, command[0], &actions, &attr, command, environ);
    if (err != 0) {
        fprintf(stderr, "measure: cannot run %s: %s\n", command[0], strerror(err));
        return 1;
    }
    child = pid;
    alarm((unsigned)timeout);

    if (!first_line) {
        int status = wait_child();
        uint64_t end = now_ns();
        if (timed_out) {
            fprintf(stderr, "measure: %s did not finish within %d s\n", command[0], timeout);
            return 1;
        }
        if (status < 0) return 1;
        printf("%llu %d\n", (unsigned long long)(end - start), status);
        return 0;
    }

    close(pipefd[1]);
    char line[4096];
    size_t used = 0;
    uint64_t found_at = 0;
    char *found = NULL;
    while (!found) {
        if (used == sizeof(line) - 1) used = 0;  // an overlong line: drop it, keep reading
        ssize_t n = read(pipefd[0], line + used, sizeof(line) - 1 - used);
        if (n < 0 && errno == EINTR && !timed_out) continue;
        if (n <= 0) break;
        uint64_t t = now_ns();
        used += (size_t)n;
        line[used] = 0;
        char *start_of_line = line;
        char *newline;
        while ((newline = memchr(start_of_line, '\n', used - (size_t)(start_of_line - line)))) {
            *newline = 0;
            if (!match || strstr(start_of_line, match)) {
                found = start_of_line;
                found_at = t;
                break;
            }
            start_of_line = newline + 1;
        }
        if (!found) {
            size_t rest = used - (size_t)(start_of_line - line);
            memmove(line, start_of_line, rest);
            used = rest;
        }
    }
    alarm(0);
    if (child > 0 && !timed_out) {
        kill(child, SIGTERM);
        alarm(5);
    }
    int status = wait_child();
    close(pipefd[0]);
    if (!found) {
        if (timed_out) fprintf(stderr, "measure: no matching output from %s within %d s\n", command[0], timeout);
        else fprintf(stderr, "measure: %s ended (status %d) before printing a matching line\n", command[0], status);
        return 1;
    }
    printf("%llu %s\n", (unsigned long long)(found_at - start), found);
    return 0;
}
