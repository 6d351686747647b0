#define _GNU_SOURCE
#include "clinux.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

const unsigned int CLINUX_MFD_CLOEXEC = MFD_CLOEXEC;
const unsigned int CLINUX_MFD_ALLOW_SEALING = MFD_ALLOW_SEALING;
const int CLINUX_MADV_HUGEPAGE = MADV_HUGEPAGE;
const int CLINUX_MADV_REMOVE = MADV_REMOVE;
const int CLINUX_O_TMPFILE = O_TMPFILE;

int clinux_memfd_create(const char *name, unsigned int flags) {
    int fd = memfd_create(name, flags);
    return fd < 0 ? -errno : fd;
}

#ifndef CPRVMM_VERSION
#define CPRVMM_VERSION "0.2.0"
#endif

const char *clinux_version(void) { return CPRVMM_VERSION; }

int clinux_sigrtmin(void) { return SIGRTMIN; }

pid_t clinux_gettid(void) { return (pid_t)syscall(SYS_gettid); }

uint64_t clinux_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct build_id_search {
    uint8_t *buf;
    size_t cap;
    size_t len;
};

// The main executable is the first object dl_iterate_phdr reports; scan its notes only.
static int find_build_id(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct build_id_search *s = data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE) continue;
        const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
        const uint8_t *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
            const uint8_t *name = p + sizeof(*n);
            const uint8_t *desc = name + ((n->n_namesz + 3) & ~3u);
            if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                size_t len = n->n_descsz < s->cap ? n->n_descsz : s->cap;
                memcpy(s->buf, desc, len);
                s->len = len;
                return 1;
            }
            p = desc + ((n->n_descsz + 3) & ~3u);
        }
    }
    return 1;  // only the main program
}

size_t clinux_build_id(uint8_t *buf, size_t cap) {
    struct build_id_search s = {buf, cap, 0};
    dl_iterate_phdr(find_build_id, &s);
    return s.len;
}

#include <sys/socket.h>
#include <sched.h>
#include <stdint.h>

int clinux_accept4(int fd, int flags) {
    int client = accept4(fd, NULL, NULL, flags);
    return client < 0 ? -errno : client;
}

#include <spawn.h>

extern char **environ;

// Both spawned kinds of child start with default signal handling, an empty signal mask and a
// process group of their own (so kill(-pid, ...) reaches whatever they started).
static int child_defaults(posix_spawnattr_t *attr) {
    sigset_t mask, defaults;
    sigemptyset(&mask);
    sigfillset(&defaults);
    int rc = posix_spawnattr_setsigmask(attr, &mask);
    if (rc == 0) rc = posix_spawnattr_setsigdefault(attr, &defaults);
    if (rc == 0) rc = posix_spawnattr_setpgroup(attr, 0);
    if (rc == 0) rc = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    return rc;
}

pid_t clinux_spawn_shell(const char *command, int child_fd, int target_fd) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) return -rc;
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&actions);
        return -rc;
    }
    // The dup2 gives the child its stdin/stdout without close-on-exec; closefrom drops the rest.
    rc = posix_spawn_file_actions_adddup2(&actions, child_fd, target_fd);
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    // Its own process group, so that stopping it can stop the whole pipeline sh started.
    if (rc == 0) rc = child_defaults(&attr);
    pid_t pid = -1;
    if (rc == 0) {
        char *argv[] = {"sh", "-c", (char *)command, NULL};
        rc = posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, environ);
    }
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    return rc != 0 ? -rc : pid;
}

int clinux_pipe2(int fds[2], int flags) {
    return pipe2(fds, flags) < 0 ? -errno : 0;
}

pid_t clinux_spawn_probe(const char *path, char *const argv[], char *const envp[], int out_fd, int err_fd) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) return -rc;
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&actions);
        return -rc;
    }
    rc = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    if (rc == 0) rc = child_defaults(&attr);
    pid_t pid = -1;
    if (rc == 0) rc = posix_spawn(&pid, path, &actions, &attr, argv, envp);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    return rc != 0 ? -rc : pid;
}

pid_t clinux_peer_pid(int fd) {
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) < 0) return -errno;
    return credentials.pid > 0 ? credentials.pid : -ESRCH;
}

int clinux_pidfd_open(pid_t pid) {
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : (int)fd;
}

