// vCPU bridges (see cbridge.h). This code runs in CLONE_VM tasks: clone_task.h has the rules.
#define _GNU_SOURCE
#include "cbridge.h"
#include "clone_task.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>

#define raw_syscall clone_task_syscall

static long bridge_ioctl(int fd, unsigned long request, void *argument) {
    return raw_syscall(SYS_ioctl, fd, (long)request, (long)argument, 0, 0, 0);
}

uint32_t cbridge_load(uint32_t *word) { return __atomic_load_n(word, __ATOMIC_SEQ_CST); }

void cbridge_store_wake(uint32_t *word, uint32_t value) {
    __atomic_store_n(word, value, __ATOMIC_SEQ_CST);
    raw_syscall(SYS_futex, (long)word, FUTEX_WAKE, 0x7fffffff, 0, 0, 0);
}

void cbridge_command(struct cbridge *bridge, uint32_t command) {
    cbridge_store_wake(&bridge->command, command);
}

static uint64_t monotonic_ns(void) {
    struct timespec now;
    raw_syscall(SYS_clock_gettime, CLOCK_MONOTONIC, (long)&now, 0, 0, 0, 0);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

uint32_t cbridge_wait_change(uint32_t *word, uint32_t value, uint64_t timeout_ns) {
    uint64_t deadline = monotonic_ns() + timeout_ns;
    for (;;) {
        uint32_t now = cbridge_load(word);
        if (now != value) return now;
        uint64_t time = monotonic_ns();
        if (time >= deadline) return now;
        uint64_t left = deadline - time;
        struct timespec wait;
        wait.tv_sec = (time_t)(left / 1000000000ull);
        wait.tv_nsec = (long)(left % 1000000000ull);
        // Shared (not private) futex: the two images map the region from one memfd.
        raw_syscall(SYS_futex, (long)word, FUTEX_WAIT, value, (long)&wait, 0, 0);
    }
}

// The kick (SIGUSR1) stays blocked outside KVM_RUN; KVM_RUN unblocks it, so a kick sent at any
// moment ends the run, and is then taken off the pending set here.
static void consume_kick(void) {
    uint64_t kick = 1ull << (SIGUSR1 - 1);
    struct timespec zero;
    zero.tv_sec = 0;
    zero.tv_nsec = 0;
    while (raw_syscall(SYS_rt_sigtimedwait, (long)&kick, 0, (long)&zero, 8, 0, 0) == SIGUSR1) {}
}

static int fail(struct cbridge_vcpu *vcpu, uint32_t step, long result) {
    vcpu->error = (int32_t)result;
    vcpu->error_step = step;
    return -1;
}

static int dump_vcpu(struct cbridge *bridge, struct cbridge_vcpu *vcpu) {
    int fd = vcpu->vcpu_fd;
    long r;
    if ((r = bridge_ioctl(fd, KVM_GET_REGS, &vcpu->regs)) < 0) return fail(vcpu, CBRIDGE_STEP_REGS, r);
    if ((r = bridge_ioctl(fd, KVM_GET_SREGS, &vcpu->sregs)) < 0) return fail(vcpu, CBRIDGE_STEP_SREGS, r);
    if ((r = bridge_ioctl(fd, KVM_GET_XSAVE, &vcpu->xsave)) < 0) return fail(vcpu, CBRIDGE_STEP_XSAVE, r);
    if ((r = bridge_ioctl(fd, KVM_GET_XCRS, &vcpu->xcrs)) < 0) return fail(vcpu, CBRIDGE_STEP_XCRS, r);
    vcpu->msrs.nmsrs = bridge->msr_count;
    for (uint32_t i = 0; i < bridge->msr_count; i++) vcpu->msrs.entries[i].index = bridge->msr_indices[i];
    if ((r = bridge_ioctl(fd, KVM_GET_MSRS, &vcpu->msrs)) != (long)bridge->msr_count) return fail(vcpu, CBRIDGE_STEP_MSRS, r < 0 ? r : -EIO);
    if ((r = bridge_ioctl(fd, KVM_GET_LAPIC, &vcpu->lapic)) < 0) return fail(vcpu, CBRIDGE_STEP_LAPIC, r);
    if ((r = bridge_ioctl(fd, KVM_GET_VCPU_EVENTS, &vcpu->events)) < 0) return fail(vcpu, CBRIDGE_STEP_EVENTS, r);
    if ((r = bridge_ioctl(fd, KVM_GET_DEBUGREGS, &vcpu->debugregs)) < 0) return fail(vcpu, CBRIDGE_STEP_DEBUGREGS, r);
    if ((r = bridge_ioctl(fd, KVM_GET_MP_STATE, &vcpu->mp_state)) < 0) return fail(vcpu, CBRIDGE_STEP_MP_STATE, r);
    return 0;
}

static int dump_platform(struct cbridge *bridge) {
    static const uint32_t chips[3] = {KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC};
    long r;
    for (int i = 0; i < 3; i++) {
        clone_task_fill(&bridge->irqchips[i], 0, sizeof bridge->irqchips[i]);
        bridge->irqchips[i].chip_id = chips[i];
        if ((r = bridge_ioctl(bridge->vm_fd, KVM_GET_IRQCHIP, &bridge->irqchips[i])) < 0) goto failed;
    }
    if ((r = bridge_ioctl(bridge->vm_fd, KVM_GET_PIT2, &bridge->pit)) < 0) goto failed;
    if ((r = bridge_ioctl(bridge->vm_fd, KVM_GET_CLOCK, &bridge->clock)) < 0) goto failed;
    return 0;
failed:
    bridge->platform_error = (int32_t)r;
    return -1;
}

// Copies the exit KVM_RUN stopped at into the region, for the image that serves it.
static void record_exit(struct cbridge_vcpu *vcpu, struct kvm_run *run) {
    vcpu->has_exit = 1;
    vcpu->exit_reason = run->exit_reason;
    if (run->exit_reason == KVM_EXIT_IO) {
        vcpu->io_direction = run->io.direction;
        vcpu->io_size = run->io.size;
        vcpu->io_port = run->io.port;
        vcpu->io_count = run->io.count;
        size_t length = (size_t)run->io.size * run->io.count;
        if (length > CBRIDGE_EXIT_DATA) length = CBRIDGE_EXIT_DATA;
        clone_task_copy(vcpu->data, (char *)run + run->io.data_offset, length);
    } else if (run->exit_reason == KVM_EXIT_MMIO) {
        vcpu->mmio_address = run->mmio.phys_addr;
        vcpu->mmio_length = run->mmio.len;
        vcpu->mmio_is_write = run->mmio.is_write;
        clone_task_copy(vcpu->data, run->mmio.data, sizeof run->mmio.data);
    }
}

// KVM completes an I/O or MMIO exit (an IN's data lands in the guest register, RIP moves on)
// only at the next KVM_RUN; immediate_exit makes that run return right after, so the state
// dumped afterwards is at an instruction boundary (the KVM API's rule before saving state).
static int complete_exit(struct cbridge_vcpu *vcpu, struct kvm_run *run) {
    if (vcpu->exit_reason == KVM_EXIT_IO && vcpu->io_direction == KVM_EXIT_IO_IN) {
        size_t length = (size_t)vcpu->io_size * vcpu->io_count;
        if (length > CBRIDGE_EXIT_DATA) length = CBRIDGE_EXIT_DATA;
        clone_task_copy((char *)run + run->io.data_offset, vcpu->data, length);
    } else if (vcpu->exit_reason == KVM_EXIT_MMIO && !vcpu->mmio_is_write) {
        clone_task_copy(run->mmio.data, vcpu->data, sizeof run->mmio.data);
    }
    run->immediate_exit = 1;
    long r = bridge_ioctl(vcpu->vcpu_fd, KVM_RUN, 0);
    run->immediate_exit = 0;
    consume_kick();
    if (r < 0 && r != -EINTR) return fail(vcpu, CBRIDGE_STEP_COMPLETE, r);
    return 0;
}

static const struct cbridge_port *find_port(struct cbridge *bridge, uint16_t port) {
    for (uint32_t i = 0; i < bridge->port_count && i < CBRIDGE_MAX_PORTS; i++) {
        if (bridge->ports[i].port == port) return &bridge->ports[i];
    }
    return NULL;
}

// Serves a port I/O exit without the device where the port table allows it (see the header);
// KVM completes it at the next KVM_RUN. Returns 0 when the exit must wait for an image.
static int serve_inline(struct cbridge *bridge, struct kvm_run *run) {
    if (run->exit_reason != KVM_EXIT_IO) return 0;
    const struct cbridge_port *port = find_port(bridge, run->io.port);
    if (!port) return 0;
    char *data = (char *)run + run->io.data_offset;
    size_t length = (size_t)run->io.size * run->io.count;
    if (run->io.direction == KVM_EXIT_IO_IN) {
        if (!(port->flags & CBRIDGE_PORT_READ_CONSTANT) || run->io.size != 1) return 0;
        clone_task_fill(data, port->read_value, length);
        return 1;
    }
    if (!(port->flags & CBRIDGE_PORT_WRITE_LOGGED)) return 0;
    size_t need = sizeof(struct cbridge_log_entry) + ((length + 7) & ~(size_t)7);
    while (__atomic_exchange_n(&bridge->log_lock, 1, __ATOMIC_ACQUIRE)) __builtin_ia32_pause();
    int logged = 0;
    if (bridge->log_used + need <= CBRIDGE_LOG_SIZE) {
        struct cbridge_log_entry entry;
        entry.port = run->io.port;
        entry.size = run->io.size;
        entry.pad = 0;
        entry.count = run->io.count;
        clone_task_copy(bridge->log + bridge->log_used, &entry, sizeof entry);
        clone_task_copy(bridge->log + bridge->log_used + sizeof entry, data, length);
        __atomic_store_n(&bridge->log_used, bridge->log_used + (uint32_t)need, __ATOMIC_RELEASE);
        logged = 1;
    }
    __atomic_store_n(&bridge->log_lock, 0, __ATOMIC_RELEASE);
    return logged;
}

struct bridge_start {
    struct cbridge *bridge;
    uint32_t index;
};

// The process died (a crash, SIGKILL): no image will take the vCPUs over, but systemd keeps
// the region in its fd store (FDStoreRecovery). The kick is also the death signal, so a bridge
// in KVM_RUN sees it at once; waits are bounded to look again.
static int orphaned(struct cbridge *bridge) {
    return raw_syscall(SYS_getppid, 0, 0, 0, 0, 0, 0) != bridge->parent_pid;
}

// Waits while `*word` is `value`, until the process dies.
static uint32_t wait_while(struct cbridge *bridge, uint32_t *word, uint32_t value) {
    uint32_t now;
    while ((now = cbridge_load(word)) == value && !orphaned(bridge)) cbridge_wait_change(word, value, 50000000ull);
    return now;
}

static int bridge_main(void *argument) {
    struct bridge_start *start = argument;
    struct cbridge *bridge = start->bridge;
    struct cbridge_vcpu *vcpu = &bridge->vcpus[start->index];
    struct kvm_run *run = (struct kvm_run *)(uintptr_t)vcpu->run_page;

    uint64_t all = ~0ull;
    raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, 0, 8, 0, 0);
    // The guest must not run on without the process: if the thread that cloned the bridges
    // dies (a crash, SIGKILL), the death signal is the kick, and the bridges stop, dump the
    // vCPUs for a restarted process (orphaned) and exit. An exec is no death: the exec'ing
    // thread stays the parent.
    raw_syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGUSR1, 0, 0, 0, 0);
    if (orphaned(bridge)) clone_task_exit(1);

    uint32_t command = wait_while(bridge, &bridge->command, CBRIDGE_HOLD);
    if (command == CBRIDGE_RUN && !orphaned(bridge)) {
        // struct kvm_signal_mask: a length, then the kernel's 8-byte sigset.
        struct {
            uint32_t length;
            uint64_t set;
        } __attribute__((packed)) mask;
        mask.length = 8;
        mask.set = ~(1ull << (SIGUSR1 - 1));
        long r = bridge_ioctl(vcpu->vcpu_fd, KVM_SET_SIGNAL_MASK, &mask);
        if (r < 0) {
            fail(vcpu, CBRIDGE_STEP_SIGNAL_MASK, r);
        } else {
            vcpu->running_ns = monotonic_ns();
            cbridge_store_wake(&vcpu->state, CBRIDGE_RUNNING);
            // An exit served here is complete only after the next KVM_RUN (the KVM API's rule:
            // until then RIP still points at the instruction, and a restored state would run
            // it again, a logged OUT twice). So a stop request still enters once more, with
            // immediate_exit: KVM completes the exit and returns before the next instruction.
            int completion_pending = 0;
            for (;;) {
                int stop = cbridge_load(&bridge->command) != CBRIDGE_RUN || orphaned(bridge);
                if (stop && !completion_pending) break;
                run->immediate_exit = stop ? 1 : 0;
                r = bridge_ioctl(vcpu->vcpu_fd, KVM_RUN, 0);
                run->immediate_exit = 0;
                completion_pending = 0;
                if (r == -EINTR || r == -EAGAIN || (r == 0 && run->exit_reason == KVM_EXIT_INTR)) {
                    consume_kick();
                    continue;
                }
                if (r < 0) {
                    vcpu->stall_ns = monotonic_ns();
                    fail(vcpu, CBRIDGE_STEP_RUN, r);
                    break;
                }
                if (serve_inline(bridge, run)) {
                    vcpu->guest_exits++;
                    completion_pending = 1;
                    continue;
                }
                // This exit needs a device, and the devices belong to the images: stop here
                // and let the image that takes the vCPU over serve it.
                vcpu->stall_ns = monotonic_ns();
                record_exit(vcpu, run);
                break;
            }
        }
    }
    cbridge_store_wake(&vcpu->state, CBRIDGE_STOPPED);
    while ((command = cbridge_load(&bridge->command)) < CBRIDGE_STOP && !orphaned(bridge)) {
        wait_while(bridge, &bridge->command, command);
    }
    // Orphaned, the bridge dumps as if told to stop, for a restarted process to resume from.
    if (command == CBRIDGE_STOP || (command < CBRIDGE_STOP && orphaned(bridge))) {
        int ok = vcpu->error == 0;
        if (ok && vcpu->has_exit && (vcpu->exit_reason == KVM_EXIT_IO || vcpu->exit_reason == KVM_EXIT_MMIO)) {
            wait_while(bridge, &vcpu->served, 0);
            if (cbridge_load(&vcpu->served) != 0) {
                ok = complete_exit(vcpu, run) == 0;
            } else {
                // The process died and no image will ever serve this exit. KVM commits an
                // exit's instruction only at the next KVM_RUN and keeps the pending I/O out of
                // the state userspace reads (RIP still points at the instruction, its
                // destination is unwritten), so the dump is the vCPU just before it: the
                // restarted process executes the instruction again and serves it then, as if
                // the crash had come a moment earlier.
                __atomic_store_n(&vcpu->has_exit, 0, __ATOMIC_RELEASE);
            }
        }
        ok = ok && dump_vcpu(bridge, vcpu) == 0;
        // Back to no signal mask, for the vCPU thread that takes the vCPU back after a failed exec.
        bridge_ioctl(vcpu->vcpu_fd, KVM_SET_SIGNAL_MASK, NULL);
        if (__atomic_add_fetch(&bridge->dumped, 1, __ATOMIC_SEQ_CST) == bridge->vcpu_count) {
            // The last vCPU out: every vCPU is stopped, so the platform state is consistent.
            cbridge_store_wake(&bridge->platform_state, dump_platform(bridge) == 0 ? CBRIDGE_DUMPED : CBRIDGE_FAILED);
        }
        cbridge_store_wake(&vcpu->state, ok ? CBRIDGE_DUMPED : CBRIDGE_FAILED);
        wait_while(bridge, &bridge->command, CBRIDGE_STOP);
    }
    // If this is the last task of the old address space, its teardown (about 100 ms a core
    // per GiB the guest touched) runs in this exit: at SCHED_IDLE, not against the guest.
    struct sched_param idle;
    idle.sched_priority = 0;
    raw_syscall(SYS_sched_setscheduler, 0, SCHED_IDLE, (long)&idle, 0, 0, 0);
    clone_task_exit(0);
}

int cbridge_spawn(struct cbridge *bridge, uint32_t index, void **stack_out) {
    // Runs in the calling thread (libc is fine here); only bridge_main runs in the new task.
    char *stack = mmap(NULL, CBRIDGE_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return -errno;
    // The start arguments live at the stack's low end. The caller unmaps the stack once the
    // task has exited (a failed exec); after a successful exec it goes with the old image.
    struct bridge_start *start = (struct bridge_start *)stack;
    start->bridge = bridge;
    start->index = index;
    int pid = clone(bridge_main, stack + CBRIDGE_STACK_SIZE, CLONE_VM | CLONE_FILES | SIGCHLD, start);
    if (pid < 0) {
        int error = errno;
        munmap(stack, CBRIDGE_STACK_SIZE);
        return -error;
    }
    *stack_out = stack;
    return pid;
}
