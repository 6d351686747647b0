// The teardown holder (cbridge.h): a CLONE_VM task that keeps the old image's address space
// alive past a live update's exec. It runs in a CLONE_VM task: clone_task.h has the rules.
#define _GNU_SOURCE
#include "cbridge.h"
#include "clone_task.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>

static int teardown_holder_main(void *argument) {
    unsigned int ms = (unsigned int)(uintptr_t)argument;
    uint64_t all = ~0ull;
    clone_task_syscall(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, 0, sizeof all, 0, 0);
    // Tearing the old address space down takes a core for ~100 ms per GiB the guest touched
    // (unmapping it), right while the guest runs on: at SCHED_IDLE it only takes idle time.
    struct sched_param idle;
    idle.sched_priority = 0;
    clone_task_syscall(SYS_sched_setscheduler, 0, SCHED_IDLE, (long)&idle, 0, 0, 0);
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    clone_task_syscall(SYS_nanosleep, (long)&ts, 0, 0, 0, 0, 0);
    clone_task_exit(0);
}

int cbridge_spawn_teardown_holder(unsigned int milliseconds, void **stack_out) {
    // Runs in the calling thread (libc is fine here).
    char *stack = mmap(NULL, CBRIDGE_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return -errno;
    int pid = clone(teardown_holder_main, stack + CBRIDGE_STACK_SIZE, CLONE_VM | CLONE_FILES | SIGCHLD,
                    (void *)(uintptr_t)milliseconds);
    if (pid < 0) {
        int error = errno;
        munmap(stack, CBRIDGE_STACK_SIZE);
        return -error;
    }
    *stack_out = stack;
    return pid;
}
