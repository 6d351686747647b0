// vCPU bridges: tasks that keep the guest running across a live update's exec.
//
// execve() kills every thread of the process, and a KVM VM works only from the address space
// (mm) that created it. A bridge is a task cloned with CLONE_VM but without CLONE_THREAD: it
// shares the old image's address space and fd table, is not part of the thread group, and so
// survives the exec. The old image pauses its vCPU threads, hands each vCPU to a bridge, which
// goes on running it with KVM_RUN, and execs. The new image creates its VM, loads the device
// state, and only then stops the bridges; each one finishes the exit it stopped at (served by
// the new image's devices), writes its vCPU's KVM state into the shared region, and the new
// image restores it. The guest pause is that handover, not the exec and the new VM's set-up.
//
// The region lives in a memfd both images map (the handover fd "vcpu-bridge"); its futex words
// are shared futexes, so the two address spaces can wait on each other.
//
// Bridges and teardown holders run in CLONE_VM tasks that share the cloning thread's TLS:
// the rules their code keeps are in clone_task.h.
#ifndef CBRIDGE_H
#define CBRIDGE_H

#include "ckvm.h"

#define CBRIDGE_MAGIC 0x42525043u  // "CPRB"
#define CBRIDGE_VERSION 1u
#define CBRIDGE_MAX_MSRS 128
#define CBRIDGE_EXIT_DATA 4096
#define CBRIDGE_MAX_PORTS 16
#define CBRIDGE_LOG_SIZE 65536

// What a bridge may do at a port on its own, without the device: the old image promises that
// the device's state cannot change until the handover (nothing else runs its devices), so a
// read with no side effect returns a constant, and a write that leaves the state unchanged
// (a UART's THR) only has to be performed later, in order: the bridge logs it.
enum {
    CBRIDGE_PORT_READ_CONSTANT = 1,
    CBRIDGE_PORT_WRITE_LOGGED = 2,
};

struct cbridge_port {
    uint16_t port;
    uint8_t flags;
    uint8_t read_value;
};

// One logged OUT in cbridge.log: this header, then size * count bytes, padded to 8.
struct cbridge_log_entry {
    uint16_t port;
    uint8_t size;
    uint8_t pad;
    uint32_t count;
};

// cbridge.command: what every bridge is asked to do (a futex word).
enum {
    CBRIDGE_HOLD = 0,  // wait: the vCPU thread still owns the vCPU
    CBRIDGE_RUN = 1,   // run the guest
    CBRIDGE_STOP = 2,  // stop, finish the pending exit once served, dump the state
    CBRIDGE_EXIT = 3,  // end the task
};

// cbridge_vcpu.state: where one bridge is (a futex word).
enum {
    CBRIDGE_STARTING = 0,
    CBRIDGE_RUNNING = 1,
    CBRIDGE_STOPPED = 2,  // out of KVM_RUN; has_exit says whether an exit waits to be served
    CBRIDGE_DUMPED = 3,   // the vCPU's state is in the region
    CBRIDGE_FAILED = 4,   // an ioctl failed: error and error_step say which
};

// cbridge_vcpu.error_step: the call that failed.
enum {
    CBRIDGE_STEP_SIGNAL_MASK = 1,
    CBRIDGE_STEP_RUN,
    CBRIDGE_STEP_COMPLETE,  // the KVM_RUN that completes a served exit
    CBRIDGE_STEP_REGS,
    CBRIDGE_STEP_SREGS,
    CBRIDGE_STEP_XSAVE,
    CBRIDGE_STEP_XCRS,
    CBRIDGE_STEP_MSRS,
    CBRIDGE_STEP_LAPIC,
    CBRIDGE_STEP_EVENTS,
    CBRIDGE_STEP_DEBUGREGS,
    CBRIDGE_STEP_MP_STATE,
};

struct cbridge_msrs {
    uint32_t nmsrs;
    uint32_t pad;
    struct kvm_msr_entry entries[CBRIDGE_MAX_MSRS];
};

struct cbridge_vcpu {
    int32_t vcpu_fd;
    int32_t pid;
    uint64_t run_page;  // the kvm_run mapping, an address in the old image's mm
    uint32_t state;
    uint32_t served;    // set by the image that served the pending exit (a futex word)
    uint32_t has_exit;
    uint32_t exit_reason;
    uint8_t io_direction;
    uint8_t io_size;
    uint16_t io_port;
    uint32_t io_count;
    uint64_t mmio_address;
    uint32_t mmio_length;
    uint32_t mmio_is_write;
    uint8_t data[CBRIDGE_EXIT_DATA];  // the exit's data; IN and MMIO-read results go here
    int32_t error;       // -errno
    uint32_t error_step; // which call failed: CBRIDGE_STEP_*
    uint64_t guest_exits;  // exits served in the bridge
    uint64_t stall_ns;     // CLOCK_MONOTONIC when it stopped at an exit it could not serve
    uint64_t running_ns;   // CLOCK_MONOTONIC right before its first KVM_RUN
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct ckvm_xsave xsave;
    struct kvm_xcrs xcrs;
    struct cbridge_msrs msrs;
    struct kvm_lapic_state lapic;
    struct kvm_vcpu_events events;
    struct kvm_debugregs debugregs;
    struct kvm_mp_state mp_state;
};

struct cbridge {
    uint32_t magic;
    uint32_t version;
    uint32_t size;
    uint32_t vcpu_count;
    int32_t vm_fd;
    int32_t parent_pid;
    uint32_t msr_count;
    uint32_t msr_indices[CBRIDGE_MAX_MSRS];
    uint32_t command;
    uint32_t dumped;          // vCPUs dumped; the one that completes the count dumps the platform
    uint32_t platform_state;  // 0 not yet, CBRIDGE_DUMPED or CBRIDGE_FAILED (a futex word)
    int32_t platform_error;
    uint64_t guest_resumed_ns;  // CLOCK_MONOTONIC when the bridges were told to run
    uint32_t port_count;
    struct cbridge_port ports[CBRIDGE_MAX_PORTS];
    uint32_t log_lock;
    uint32_t log_used;
    uint32_t log_replayed;  // bytes of the log an image already performed
    uint8_t log[CBRIDGE_LOG_SIZE];
    struct kvm_irqchip irqchips[3];
    struct kvm_pit_state2 pit;
    struct kvm_clock_data clock;
    struct cbridge_vcpu vcpus[];
};

// The region is an ABI between two binaries (the image that spawned the bridges and the one
// that takes them over): its layout may change only with CBRIDGE_VERSION. These pin it.
_Static_assert(sizeof(struct cbridge) == 67904, "struct cbridge changed: bump CBRIDGE_VERSION and update these");
_Static_assert(offsetof(struct cbridge, command) == 540, "struct cbridge changed: bump CBRIDGE_VERSION");
_Static_assert(offsetof(struct cbridge, log) == 648, "struct cbridge changed: bump CBRIDGE_VERSION");
_Static_assert(offsetof(struct cbridge, irqchips) == 66184, "struct cbridge changed: bump CBRIDGE_VERSION");
_Static_assert(offsetof(struct cbridge, vcpus) == 67904, "struct cbridge changed: bump CBRIDGE_VERSION");
_Static_assert(sizeof(struct cbridge_vcpu) == 12408, "struct cbridge_vcpu changed: bump CBRIDGE_VERSION");
_Static_assert(offsetof(struct cbridge_vcpu, state) == 16, "struct cbridge_vcpu changed: bump CBRIDGE_VERSION");
_Static_assert(offsetof(struct cbridge_vcpu, data) == 56, "struct cbridge_vcpu changed: bump CBRIDGE_VERSION");
_Static_assert(offsetof(struct cbridge_vcpu, regs) == 4184, "struct cbridge_vcpu changed: bump CBRIDGE_VERSION");
_Static_assert(offsetof(struct cbridge_vcpu, msrs) == 9128, "struct cbridge_vcpu changed: bump CBRIDGE_VERSION");
_Static_assert(offsetof(struct cbridge_vcpu, mp_state) == 12400, "struct cbridge_vcpu changed: bump CBRIDGE_VERSION");

// The stack of every task this target clones (bridges, teardown holders).
#define CBRIDGE_STACK_SIZE (64 * 1024)

static inline size_t cbridge_size(uint32_t vcpu_count) {
    return sizeof(struct cbridge) + (size_t)vcpu_count * sizeof(struct cbridge_vcpu);
}

static inline struct cbridge_vcpu *cbridge_vcpu_at(struct cbridge *bridge, uint32_t index) {
    return &bridge->vcpus[index];
}

// Swift does not import arrays this large as struct members.
static inline uint8_t *cbridge_log(struct cbridge *bridge) { return bridge->log; }

/// Starts the bridge for vCPU `index` (its fields vcpu_fd and run_page set), holding until the
/// command is RUN. Returns its pid or -errno; `*stack_out` is its stack (CBRIDGE_STACK_SIZE
/// bytes), to unmap once the task is reaped in the same image (after a failed exec).
int cbridge_spawn(struct cbridge *bridge, uint32_t index, void **stack_out);

/// Starts a task that holds the calling image's address space (and fd table) for
/// `milliseconds`, so that after an exec the old address space is torn down by that task, at
/// SCHED_IDLE, outside the guest's pause instead of inside execve (about 100 ms a core per GiB
/// the guest touched). Returns its pid (reap it) or -errno; `*stack_out` as for cbridge_spawn.
int cbridge_spawn_teardown_holder(unsigned int milliseconds, void **stack_out);

/// Sets the command and wakes every bridge waiting for one.
void cbridge_command(struct cbridge *bridge, uint32_t command);

/// Waits until `*word` (a futex word in the region) is not `value`, at most `timeout_ns`.
/// Returns the word's value then.
uint32_t cbridge_wait_change(uint32_t *word, uint32_t value, uint64_t timeout_ns);

/// Stores `value` in a futex word of the region and wakes its waiters.
void cbridge_store_wake(uint32_t *word, uint32_t value);

uint32_t cbridge_load(uint32_t *word);

#endif
