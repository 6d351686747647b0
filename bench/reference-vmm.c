// reference-vmm.c: the smallest VMM that does what bench/run measures cprvmm doing — the floor
// cprvmm is compared against. Two modes:
//
// 1. Port-I/O exit rate (bench/run part a): `reference-vmm IMAGE`
//    It sets the VM up as cprvmm does for `-bios`: in-kernel irqchip + PIT2, real-mode support
//    pages (TSS at 0xFEFFD000, identity map at 0xFEFFC000), the firmware image read-only just
//    below 4 GiB, 1 MiB of RAM at 0, one vCPU with the host's supported CPUID, started at the
//    reset vector. Then a bare KVM_RUN loop on the main thread counts port-I/O exits until the
//    guest writes V to port 0x501, and exits with status (V << 1) | 1 like cprvmm and QEMU.
//    Prints one line: exits, seconds, exits/s.
//
// 2. Pause latency (bench/run part d): `reference-vmm --pause N [--vcpus K] (--cpl3 | IMAGE)`
//    What cprvmm's Machine.pause() does (cprvmm-bench measures that), with nothing around it.
//    Each vCPU runs KVM_RUN on its own pthread while the guest spins without exits. The main
//    thread, N times: takes the mutex, marks the VM paused and, for every vCPU, sets
//    immediate_exit = 1 on its kvm_run page and pthread_kill(SIGUSR1) (empty handler, no
//    SA_RESTART); then waits on a condition variable until every vCPU thread has come back
//    from KVM_RUN with EINTR and parked (waiting on the condition variable); the time from
//    before the first kick to the main thread waking with all parked is one sample. Then it
//    lets the vCPUs run again (immediate_exit cleared under the mutex, as cprvmm does, so a
//    kick can never be lost) and sleeps 2 ms. 200 ms of spinning come before the first sample.
//    Guests:
//      IMAGE   a real-mode firmware image (bench/spin.S: `1: jmp 1b`) at the reset vector, as
//              in mode 1. On this host (kvm_pvm) CPL0 code — real mode included — is run by
//              KVM's instruction emulator, not natively, so a kick may be noticed at a
//              different speed than with cprvmm's built-in guest, which spins at CPL3.
//      --cpl3  like cprvmm's built-in guest: every vCPU enters 64-bit mode at CPL3 directly
//              (GDT, one TSS per vCPU and identity-mapped 2 MiB pages written from the host, as
//              Sources/Worker/Boot/X86LongMode.swift does), rflags IF=0, and runs natively
//              `1: incq (%rax); jmp 1b` on its own heartbeat counter (RAM at 0x5000 + 64 * i).
//              The main thread checks that every heartbeat advanced between two pauses (i.e.
//              the vCPU was really back in the guest when kicked) and reports stalls.
//    Prints one line, in the format of cprvmm-bench, then counters:
//      pause-all-vcpus reference guest=cpl3 vcpus=1 n=200: p50 82.6 us  p90 125.2 us  max 1770.3 us
//        kvm_run_return p50 47.1 us  eintr 201 other_exits 0 stalled 0 guest_loops_per_s 1.26e+09
//    (one line; kvm_run_return = p50 of the time from the first kick until the last vCPU's
//    KVM_RUN returned, by the vCPU threads' clock — the rest is the wake-up through the
//    condition variable; eintr = KVM_RUN returns with EINTR, one per vCPU per pause plus one at
//    the end when every vCPU was back in the guest; other_exits = KVM_RUN returns other than
//    EINTR, which the spinning guest should never cause; stalled = vCPU-pauses before which
//    that vCPU's heartbeat had not moved; guest_loops_per_s = heartbeat increments per second
//    per vCPU over the whole run, ~1e9 when the loop runs natively; the last two --cpl3 only).
//    Exit status 0, or 1 on any failure.
//
// Build: clang -O2 -pthread -o reference-vmm reference-vmm.c

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TSS_ADDR 0xFEFFD000UL
#define IDENTITY_MAP_ADDR 0xFEFFC000UL
#define LOW_RAM_SIZE (1UL << 20)
#define FOUR_GIB (1ULL << 32)
#define DEBUG_EXIT_PORT 0x501
#define MAX_VCPUS 64

// --cpl3 guest layout in low RAM (the same addresses as cprvmm's guest_layout.h where they exist).
#define G_GDT 0x1000
#define G_TSS 0x2000
#define G_TSS_STRIDE 128
#define G_HEARTBEAT 0x5000
#define G_HEARTBEAT_STRIDE 64
#define G_CODE 0x6000
#define G_STACKS 0x8000            // 512 bytes per vCPU (unused by the spin loop)
#define G_PML4 0x10000
#define G_PDPT 0x11000
#define G_PD 0x12000               // one page directory: the first GiB in 2 MiB pages
#define SEL_USER_CODE 0x1b
#define SEL_USER_DATA 0x23
#define SEL_TSS_BASE 0x28          // vCPU i: 0x28 + 16 * i

static void die(const char *what) {
    fprintf(stderr, "reference-vmm: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void fail(const char *message) {
    fprintf(stderr, "reference-vmm: %s\n", message);
    exit(1);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *map_anonymous(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    return p;
}

static void set_region(int vm, uint32_t slot, uint64_t guest, uint64_t size, void *host, int readonly) {
    struct kvm_userspace_memory_region region = {
        .slot = slot,
        .flags = readonly ? KVM_MEM_READONLY : 0,
        .guest_phys_addr = guest,
        .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)host,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
}

// Firmware image: a non-zero multiple of 64 KiB, as for cprvmm -bios.
static uint8_t *read_image(const char *path, size_t *size_out) {
    int image_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (image_fd < 0) die(path);
    struct stat st;
    if (fstat(image_fd, &st) < 0) die("fstat");
    size_t image_size = (size_t)st.st_size;
    if (image_size == 0 || image_size % 0x10000 != 0 || image_size > (16UL << 20))
        fail("image size must be a non-zero multiple of 64 KiB, at most 16 MiB");
    uint8_t *image = map_anonymous(image_size);
    for (size_t done = 0; done < image_size;) {
        ssize_t n = read(image_fd, image + done, image_size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) die("read image");
        done += (size_t)n;
    }
    close(image_fd);
    *size_out = image_size;
    return image;
}

struct machine {
    int kvm, vm;
    uint8_t *low_ram;
    int run_size;
};

// The VM as cprvmm sets it up for -bios: irqchip, PIT2, real-mode support pages, 1 MiB of RAM
// at 0 and (if given) the image read-only just below 4 GiB.
static struct machine create_machine(const uint8_t *image, size_t image_size) {
    struct machine m;
    m.kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (m.kvm < 0) die("/dev/kvm");
    if (ioctl(m.kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) fail("unexpected KVM API version");
    m.vm = ioctl(m.kvm, KVM_CREATE_VM, 0);
    if (m.vm < 0) die("KVM_CREATE_VM");

    uint64_t identity = IDENTITY_MAP_ADDR;
    if (ioctl(m.vm, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0) die("KVM_SET_IDENTITY_MAP_ADDR");
    if (ioctl(m.vm, KVM_SET_TSS_ADDR, TSS_ADDR) < 0) die("KVM_SET_TSS_ADDR");
    if (ioctl(m.vm, KVM_CREATE_IRQCHIP, 0) < 0) die("KVM_CREATE_IRQCHIP");
    struct kvm_pit_config pit = {0};
    if (ioctl(m.vm, KVM_CREATE_PIT2, &pit) < 0) die("KVM_CREATE_PIT2");

    m.low_ram = map_anonymous(LOW_RAM_SIZE);
    set_region(m.vm, 0, 0, LOW_RAM_SIZE, m.low_ram, 0);
    if (image) set_region(m.vm, 1, FOUR_GIB - image_size, image_size, (void *)image, 1);

    m.run_size = ioctl(m.kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (m.run_size < (int)sizeof(struct kvm_run)) die("KVM_GET_VCPU_MMAP_SIZE");
    return m;
}

// A vCPU with the host's supported CPUID (cprvmm gives its vCPUs a filtered copy) and its
// kvm_run page mapped. It starts in its reset state: real mode, CS base 0xFFFF0000, IP 0xFFF0.
static int create_vcpu(const struct machine *m, int index, struct kvm_run **run_out) {
    int vcpu = ioctl(m->vm, KVM_CREATE_VCPU, index);
    if (vcpu < 0) die("KVM_CREATE_VCPU");
    int nent = 256;
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + (size_t)nent * sizeof(struct kvm_cpuid_entry2));
    if (!cpuid) fail("out of memory");
    cpuid->nent = (uint32_t)nent;
    if (ioctl(m->kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
    if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0) die("KVM_SET_CPUID2");
    free(cpuid);
    struct kvm_run *run = mmap(NULL, (size_t)m->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) die("mmap kvm_run");
    *run_out = run;
    return vcpu;
}

// ---------------------------------------------------------------- mode 1: port-I/O exit rate

static int exit_rate(const char *path) {
    size_t image_size;
    uint8_t *image = read_image(path, &image_size);
    struct machine m = create_machine(image, image_size);
    struct kvm_run *run;
    int vcpu = create_vcpu(&m, 0, &run);

    uint64_t io_exits = 0, other_exits = 0;
    int status = -1;
    double start = now_seconds();
    while (status < 0) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            die("KVM_RUN");
        }
        switch (run->exit_reason) {
        case KVM_EXIT_IO:
            io_exits++;
            if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == DEBUG_EXIT_PORT) {
                const uint8_t *data = (const uint8_t *)run + run->io.data_offset;
                uint32_t value = 0;
                memcpy(&value, data, run->io.size < 4 ? run->io.size : 4);
                status = (int)(((value << 1) | 1) & 0xFF);
            } else if (run->io.direction == KVM_EXIT_IO_IN) {
                memset((uint8_t *)run + run->io.data_offset, 0xFF, (size_t)run->io.size * run->io.count);
            }
            break;
        case KVM_EXIT_INTR:
            other_exits++;
            break;
        case KVM_EXIT_HLT:
            fail("guest halted");
        case KVM_EXIT_SHUTDOWN:
            fail("guest shutdown (triple fault)");
        case KVM_EXIT_FAIL_ENTRY:
            fail("KVM_EXIT_FAIL_ENTRY");
        case KVM_EXIT_INTERNAL_ERROR:
            fprintf(stderr, "reference-vmm: KVM internal error, suberror %u\n", run->internal.suberror);
            exit(1);
        default:
            fprintf(stderr, "reference-vmm: unexpected exit reason %u\n", run->exit_reason);
            exit(1);
        }
    }
    double seconds = now_seconds() - start;
    printf("io_exits %llu other_exits %llu seconds %.6f io_exits_per_s %.0f\n",
           (unsigned long long)io_exits, (unsigned long long)other_exits, seconds, (double)io_exits / seconds);
    fflush(stdout);
    return status;
}

// ---------------------------------------------------------------- mode 2: pause latency

static void store64(uint8_t *ram, uint64_t address, uint64_t value) { memcpy(ram + address, &value, 8); }

// GDT (null, -, -, user code, user data, one TSS per vCPU), TSSs, page tables mapping the first
// GiB 1:1 with user-accessible 2 MiB pages, and the spin loop: what X86LongMode.swift writes.
static void write_cpl3_guest(uint8_t *ram, int vcpus) {
    store64(ram, G_GDT + 0x08, 0x00AF9A000000FFFFull);  // kernel code, 64-bit, DPL 0 (unused)
    store64(ram, G_GDT + 0x10, 0x00CF92000000FFFFull);  // kernel data (unused)
    store64(ram, G_GDT + 0x18, 0x00AFFA000000FFFFull);  // 0x1b user code: 64-bit, DPL 3
    store64(ram, G_GDT + 0x20, 0x00CFF2000000FFFFull);  // 0x23 user data, DPL 3
    for (int i = 0; i < vcpus; i++) {
        uint64_t tss = G_TSS + (uint64_t)i * G_TSS_STRIDE, limit = 103;
        store64(ram, tss + 4, G_STACKS + (uint64_t)(i + 1) * 512);  // RSP0
        uint16_t iomap = 104;                                       // no I/O bitmap
        memcpy(ram + tss + 102, &iomap, 2);
        uint64_t low = (limit & 0xFFFF) | ((tss & 0xFFFFFF) << 16) | (0x8Bull << 40) | (((tss >> 24) & 0xFF) << 56);
        store64(ram, G_GDT + SEL_TSS_BASE + 16 * (uint64_t)i, low);
        store64(ram, G_GDT + SEL_TSS_BASE + 16 * (uint64_t)i + 8, tss >> 32);
    }
    const uint64_t present = 0x7;  // present, writable, user
    store64(ram, G_PML4, G_PDPT | present);
    store64(ram, G_PDPT, G_PD | present);
    for (uint64_t e = 0; e < 512; e++) store64(ram, G_PD + e * 8, (e << 21) | present | 0x80);
    static const uint8_t spin[] = {0x48, 0xFF, 0x00, 0xEB, 0xFB};  // 1: incq (%rax); jmp 1b
    memcpy(ram + G_CODE, spin, sizeof(spin));
}

static struct kvm_segment flat_segment(uint16_t selector, int code) {
    struct kvm_segment s = {0};
    s.base = 0;
    s.limit = 0xFFFFFFFF;
    s.selector = selector;
    s.type = code ? 0xB : 0x3;
    s.present = 1;
    s.dpl = 3;
    s.db = code ? 0 : 1;
    s.s = 1;
    s.l = code ? 1 : 0;
    s.g = 1;
    return s;
}

// 64-bit mode, paging on, CPL3, IF=0, RIP at the spin loop, RAX = this vCPU's heartbeat.
static void enter_cpl3(int vcpu, int index, int vcpus) {
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
    sregs.cs = flat_segment(SEL_USER_CODE, 1);
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = flat_segment(SEL_USER_DATA, 0);
    struct kvm_segment tr = {0};
    tr.base = G_TSS + (uint64_t)index * G_TSS_STRIDE;
    tr.limit = 103;
    tr.selector = (uint16_t)(SEL_TSS_BASE + 16 * index);
    tr.type = 0xB;
    tr.present = 1;
    sregs.tr = tr;
    sregs.gdt.base = G_GDT;
    sregs.gdt.limit = (uint16_t)(SEL_TSS_BASE + 16 * vcpus - 1);
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr3 = G_PML4;
    sregs.cr4 = 0x20 | 0x200 | 0x400;  // PAE, OSFXSR, OSXMMEXCPT
    sregs.cr0 = 0x80010033;            // PG, WP, NE, ET, MP, PE
    sregs.efer = 0x500;                // LME, LMA
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
    struct kvm_regs regs = {0};
    regs.rip = G_CODE;
    regs.rsp = G_STACKS + (uint64_t)(index + 1) * 512;
    regs.rax = G_HEARTBEAT + (uint64_t)index * G_HEARTBEAT_STRIDE;
    regs.rflags = 0x2;
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
}

struct vcpu {
    int fd, index;
    struct kvm_run *run;
    pthread_t thread;
    int parked;                      // under lock: waiting, outside KVM_RUN
    uint64_t returned_ns;            // under lock: when KVM_RUN last returned EINTR
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int running_requested;        // under lock
static int stop_requested;           // under lock
static uint64_t eintr_returns, other_exits;  // under lock
static int failed_errno;             // under lock: KVM_RUN failed with this errno

static void kick_handler(int sig) { (void)sig; }

static void *vcpu_main(void *arg) {
    struct vcpu *v = arg;
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &mask, NULL);
    for (;;) {
        pthread_mutex_lock(&lock);
        while (!running_requested && !stop_requested) {
            if (!v->parked) {
                v->parked = 1;
                pthread_cond_broadcast(&changed);
            }
            pthread_cond_wait(&changed, &lock);
        }
        if (stop_requested) {
            v->parked = 1;
            pthread_cond_broadcast(&changed);
            pthread_mutex_unlock(&lock);
            return NULL;
        }
        v->parked = 0;
        v->run->immediate_exit = 0;  // under the lock: a kick after this sets it again
        pthread_mutex_unlock(&lock);

        int r = ioctl(v->fd, KVM_RUN, 0);
        int err = errno;
        uint64_t t = now_ns();
        pthread_mutex_lock(&lock);
        if (r < 0 && err == EINTR) {
            eintr_returns++;
            v->returned_ns = t;
        } else if (r < 0) {
            failed_errno = err;
            stop_requested = 1;
            pthread_cond_broadcast(&changed);
        } else {
            other_exits++;  // the spinning guest should never exit
            if (v->run->exit_reason != KVM_EXIT_INTR) {  // HLT, SHUTDOWN, INTERNAL_ERROR, ...: stop
                failed_errno = -(int)v->run->exit_reason - 1;
                stop_requested = 1;
                pthread_cond_broadcast(&changed);
            }
        }
        pthread_mutex_unlock(&lock);
    }
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void print_us(const char *label, uint64_t ns) { printf("%s %.1f us", label, (double)ns / 1000.0); }

static int pause_latency(int iterations, int vcpus, const char *image_path) {
    size_t image_size = 0;
    uint8_t *image = image_path ? read_image(image_path, &image_size) : NULL;
    struct machine m = create_machine(image, image_size);
    int cpl3 = image == NULL;
    if (cpl3) write_cpl3_guest(m.low_ram, vcpus);

    struct sigaction action = {0};
    action.sa_handler = kick_handler;
    action.sa_flags = 0;  // no SA_RESTART: the interrupted KVM_RUN must return EINTR
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGUSR1, &action, NULL) < 0) die("sigaction");

    static struct vcpu v[MAX_VCPUS];
    for (int i = 0; i < vcpus; i++) {
        v[i].index = i;
        v[i].fd = create_vcpu(&m, i, &v[i].run);
        if (cpl3) enter_cpl3(v[i].fd, i, vcpus);
        if (i > 0 || cpl3) {  // direct start: secondary vCPUs do not wait for INIT/SIPI
            struct kvm_mp_state mp = {.mp_state = KVM_MP_STATE_RUNNABLE};
            if (ioctl(v[i].fd, KVM_SET_MP_STATE, &mp) < 0) die("KVM_SET_MP_STATE");
        }
    }
    pthread_mutex_lock(&lock);
    running_requested = 1;
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < vcpus; i++)
        if ((errno = pthread_create(&v[i].thread, NULL, vcpu_main, &v[i])) != 0) die("pthread_create");
    uint64_t started = now_ns();
    usleep(200000);  // let every vCPU get into its spin loop

    uint64_t *samples = calloc((size_t)iterations, sizeof(uint64_t));
    uint64_t *returns = calloc((size_t)iterations, sizeof(uint64_t));
    uint64_t last_beat[MAX_VCPUS] = {0};
    int stalled = 0;
    if (!samples || !returns) fail("out of memory");
    for (int n = 0; n < iterations; n++) {
        uint64_t start = now_ns();
        pthread_mutex_lock(&lock);
        running_requested = 0;
        for (int i = 0; i < vcpus; i++) {
            v[i].run->immediate_exit = 1;
            pthread_kill(v[i].thread, SIGUSR1);
        }
        for (;;) {
            int all = 1;
            for (int i = 0; i < vcpus; i++) all &= v[i].parked;
            if (all || stop_requested) break;
            pthread_cond_wait(&changed, &lock);
        }
        uint64_t end = now_ns();
        if (stop_requested) {
            pthread_mutex_unlock(&lock);
            break;
        }
        samples[n] = end - start;
        uint64_t last_return = 0;
        for (int i = 0; i < vcpus; i++)
            if (v[i].returned_ns > last_return) last_return = v[i].returned_ns;
        returns[n] = last_return > start ? last_return - start : 0;
        if (cpl3) {
            for (int i = 0; i < vcpus; i++) {
                uint64_t beat;
                memcpy(&beat, m.low_ram + G_HEARTBEAT + (uint64_t)i * G_HEARTBEAT_STRIDE, 8);
                if (beat == last_beat[i]) stalled++;
                last_beat[i] = beat;
            }
        }
        running_requested = 1;
        pthread_cond_broadcast(&changed);
        pthread_mutex_unlock(&lock);
        usleep(2000);  // let the vCPUs get back into the guest
    }
    pthread_mutex_lock(&lock);
    stop_requested = 1;
    for (int i = 0; i < vcpus; i++) {
        v[i].run->immediate_exit = 1;
        pthread_kill(v[i].thread, SIGUSR1);
    }
    pthread_cond_broadcast(&changed);
    int failure = failed_errno;
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < vcpus; i++) pthread_join(v[i].thread, NULL);
    if (failure > 0) {
        errno = failure;
        die("KVM_RUN");
    }
    if (failure < 0) {
        fprintf(stderr, "reference-vmm: the spinning guest exited with exit reason %d\n", -failure - 1);
        return 1;
    }

    qsort(samples, (size_t)iterations, sizeof(uint64_t), compare_u64);
    qsort(returns, (size_t)iterations, sizeof(uint64_t), compare_u64);
    printf("pause-all-vcpus reference guest=%s vcpus=%d n=%d: ", cpl3 ? "cpl3" : "realmode", vcpus, iterations);
    print_us("p50", samples[iterations / 2]);
    print_us("  p90", samples[iterations * 9 / 10]);
    print_us("  max", samples[iterations - 1]);
    print_us("  kvm_run_return p50", returns[iterations / 2]);
    printf("  eintr %llu other_exits %llu stalled %d", (unsigned long long)eintr_returns,
           (unsigned long long)other_exits, stalled);
    if (cpl3) {  // native CPL3 runs ~1e8-1e9 loops/s per vCPU; KVM's emulator would do ~1e6
        uint64_t beats = 0;
        for (int i = 0; i < vcpus; i++) {
            uint64_t beat;
            memcpy(&beat, m.low_ram + G_HEARTBEAT + (uint64_t)i * G_HEARTBEAT_STRIDE, 8);
            beats += beat;
        }
        printf(" guest_loops_per_s %.3g", (double)beats / vcpus / ((double)(now_ns() - started) * 1e-9));
    }
    printf("\n");
    fflush(stdout);
    return 0;
}

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s IMAGE\n"
                    "       %s --pause N [--vcpus K] (--cpl3 | IMAGE)\n", argv0, argv0);
    return 2;
}

int main(int argc, char **argv) {
    if (argc == 2 && argv[1][0] != '-') return exit_rate(argv[1]);
    int iterations = 0, vcpus = 1, cpl3 = 0;
    const char *image = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--pause") == 0 && i + 1 < argc) iterations = atoi(argv[++i]);
        else if (strcmp(argv[i], "--vcpus") == 0 && i + 1 < argc) vcpus = atoi(argv[++i]);
        else if (strcmp(argv[i], "--cpl3") == 0) cpl3 = 1;
        else if (argv[i][0] != '-' && !image) image = argv[i];
        else return usage(argv[0]);
    }
    if (iterations < 1 || vcpus < 1 || vcpus > MAX_VCPUS || cpl3 == (image != NULL)) return usage(argv[0]);
    return pause_latency(iterations, vcpus, image);
}
