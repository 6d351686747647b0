// What code running in a CLONE_VM task may use (the vCPU bridges, the teardown holder).
//
// Such a task shares the address space of the image that cloned it and, since clone() copies
// the fs register, that thread's TLS: errno, the stack guard, glibc's per-thread state all
// belong to another thread, which keeps running (or is gone after the exec). So its code:
//   - makes system calls through clone_task_syscall (raw `syscall`, result or -errno), never
//     through glibc, whose wrappers write errno into that other thread's TLS;
//   - calls no function outside this target: a call through the PLT would resolve lazily
//     (glibc's resolver uses TLS and locks) in a binary that is not linked -z now; copies and
//     fills go through clone_task_copy/clone_task_fill, which compile to `rep movsb/stosb`
//     (the compiler may turn a plain loop into a memcpy call);
//   - never returns into libc: it ends with clone_task_exit;
//   - assigns structs field by field: an aggregate initializer may compile to a memset call.
// BridgeTests checks that the object files of this target reference no libc symbol besides
// the clone/mmap/munmap the cloning thread itself calls.
#ifndef CLONE_TASK_H
#define CLONE_TASK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>

static inline long clone_task_syscall(long number, long a, long b, long c, long d, long e, long f) {
    long result;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(result)
                     : "a"(number), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return result;
}

static inline void clone_task_copy(void *to, const void *from, size_t length) {
    __asm__ volatile("rep movsb" : "+D"(to), "+S"(from), "+c"(length) : : "memory");
}

static inline void clone_task_fill(void *to, uint8_t value, size_t length) {
    __asm__ volatile("rep stosb" : "+D"(to), "+c"(length) : "a"(value) : "memory");
}

__attribute__((noreturn)) static inline void clone_task_exit(int status) {
    for (;;) clone_task_syscall(SYS_exit, status, 0, 0, 0, 0, 0);
}

#endif
