// Tiny shims over Linux/glibc functions that Swift's Glibc module does not expose
// (they sit behind _GNU_SOURCE or are function-like macros). Each returns -errno on
// failure so Swift callers never have to read a thread-local errno after the fact.
#ifndef CLINUX_H
#define CLINUX_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
// Not part of Swift's Glibc module; re-exported through this one.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/statfs.h>
#include <sys/timerfd.h>

// memfd_create(2); flags are MFD_*.
int clinux_memfd_create(const char *name, unsigned int flags);
extern const unsigned int CLINUX_MFD_CLOEXEC;
extern const unsigned int CLINUX_MFD_ALLOW_SEALING;

// open(2) flag behind _GNU_SOURCE: an unnamed file in a directory (memory-backend-file on a dir).
extern const int CLINUX_O_TMPFILE;

// madvise advice values not exported to Swift.
extern const int CLINUX_MADV_HUGEPAGE;
extern const int CLINUX_MADV_REMOVE;

// SIGRTMIN is a function call in glibc, not a constant.
int clinux_sigrtmin(void);

// The calling thread's kernel thread id.
pid_t clinux_gettid(void);

// Copies the GNU build id of the running executable (from its PT_NOTE program header,
// in memory: no file I/O) into buf; returns its length, 0 when there is none.
size_t clinux_build_id(uint8_t *buf, size_t cap);

// The release version of this build (CPRVMM_VERSION, settable at build time; see Package.swift).
const char *clinux_version(void);

// CLOCK_MONOTONIC in nanoseconds.
uint64_t clinux_monotonic_ns(void);



// Memory ordering for rings shared with the guest (virtqueues): Swift has no fences of its
// own that the compiler and the CPU both honour.
static inline void clinux_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
static inline void clinux_fence_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
static inline void clinux_fence_full(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
// Whether n bytes are all zero, at memcmp's speed (the bytes compared with themselves, shifted
// by one): a migration checks every page of guest RAM, in debug builds too.
static inline int clinux_is_zero(const void *bytes, size_t n) {
    const unsigned char *b = bytes;
    return n == 0 || (b[0] == 0 && memcmp(b, b + 1, n - 1) == 0);
}

// Bitmaps shared between threads (pages a device wrote while a migration reads them).
static inline void clinux_atomic_or_u64(uint64_t *word, uint64_t bits) { __atomic_fetch_or(word, bits, __ATOMIC_RELAXED); }
static inline uint64_t clinux_atomic_exchange_u64(uint64_t *word, uint64_t value) { return __atomic_exchange_n(word, value, __ATOMIC_ACQ_REL); }

// O_DIRECT sits behind _GNU_SOURCE; this is its value on x86-64.
static const int CLINUX_O_DIRECT = 040000;

// accept4(2) sits behind _GNU_SOURCE.
int clinux_accept4(int fd, int flags);

// epoll event bits: glibc declares them as enum members Swift does not import usably.
static const uint32_t CLINUX_EPOLLIN = 0x001;
static const uint32_t CLINUX_EPOLLOUT = 0x004;
static const uint32_t CLINUX_EPOLLERR = 0x008;
static const uint32_t CLINUX_EPOLLHUP = 0x010;

// Starts `/bin/sh -c command` with posix_spawn (no fork of a multi-threaded process).
// `child_fd` becomes the child's `target_fd` (0 for its stdin, 1 for its stdout); every other
// descriptor above 2 is closed in the child, close-on-exec or not. The child starts with an
// empty signal mask and default signal dispositions, in a new process group (its pid) so the
// whole command line can be signalled with kill(-pid, ...). Returns the pid, or -errno.
pid_t clinux_spawn_shell(const char *command, int child_fd, int target_fd);

// pipe2(2) sits behind _GNU_SOURCE. Returns 0 or -errno.
int clinux_pipe2(int fds[2], int flags);

// Runs `path` with `argv` and `envp` in a new process group (so the program and whatever it
// started can be killed with kill(-pid, ...)), stdin from /dev/null, stdout and stderr on
// `out_fd` and `err_fd`, no other fd, default signal handling and an empty signal mask.
// For the live-update probe (CPRExecProbe). Returns the pid, or -errno.
pid_t clinux_spawn_probe(const char *path, char *const argv[], char *const envp[], int out_fd, int err_fd);

// pidfd_open(2): an fd that becomes readable when the process exits. Returns it, or -errno.
int clinux_pidfd_open(pid_t pid);

// The pid of the process at the other end of a connected UNIX socket (SO_PEERCRED; struct
// ucred sits behind _GNU_SOURCE), in the caller's pid namespace. Returns it, or -errno.
pid_t clinux_peer_pid(int fd);

// TAP devices (/dev/net/tun), for -netdev tap (tap.c). Each returns 0 (or an fd) or -errno.
// Flags, as <linux/if_tun.h> has them.
static const int CLINUX_IFF_TAP = 0x0002;
static const int CLINUX_IFF_NO_PI = 0x1000;
static const int CLINUX_IFF_VNET_HDR = 0x4000;
static const int CLINUX_IFF_MULTI_QUEUE = 0x0100;
static const unsigned CLINUX_TUN_F_CSUM = 0x01, CLINUX_TUN_F_TSO4 = 0x02, CLINUX_TUN_F_TSO6 = 0x04,
    CLINUX_TUN_F_TSO_ECN = 0x08, CLINUX_TUN_F_UFO = 0x10;
// Opens /dev/net/tun (non-blocking, close-on-exec) and attaches it to the TAP interface `name`
// (created if missing; "" lets the kernel pick), with `flags` (IFF_*: IFF_TAP|IFF_NO_PI is
// added). The interface's name is written to name_out (16 bytes).
int clinux_tap_open(const char *name, int flags, char name_out[16]);
// What an fd passed in by the caller is (TUNGETIFF): its interface name and IFF_* flags.
int clinux_tap_info(int fd, char name_out[16], int *flags_out);
// TUNSETVNETHDRSZ and TUNSETOFFLOAD.
int clinux_tap_set_vnet_header_size(int fd, int size);
int clinux_tap_set_offload(int fd, unsigned flags);
#endif
