// reference-vmm.c: the smallest VMM that runs bench/outloop.S — the floor cprvmm's
// port-I/O exit rate is compared against (bench/run).
//
// It sets the VM up as cprvmm does for `-bios`: in-kernel irqchip + PIT2, real-mode support
// pages (TSS at 0xFEFFD000, identity map at 0xFEFFC000), the firmware image read-only just
// below 4 GiB, 1 MiB of RAM at 0, one vCPU with the host's supported CPUID, started at the
// reset vector. Then a bare KVM_RUN loop on the main thread counts port-I/O exits until the
// guest writes V to port 0x501, and exits with status (V << 1) | 1 like cprvmm and QEMU.
//
// Build: clang -O2 -o reference-vmm reference-vmm.c
// Usage: reference-vmm IMAGE        (prints one line to stdout: exits, seconds, exits/s)

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
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

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s IMAGE\n", argv[0]);
        return 2;
    }

    // Firmware image: a non-zero multiple of 64 KiB, as for cprvmm -bios.
    int image_fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (image_fd < 0) die(argv[1]);
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

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("/dev/kvm");
    if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) fail("unexpected KVM API version");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die("KVM_CREATE_VM");

    uint64_t identity = IDENTITY_MAP_ADDR;
    if (ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0) die("KVM_SET_IDENTITY_MAP_ADDR");
    if (ioctl(vm, KVM_SET_TSS_ADDR, TSS_ADDR) < 0) die("KVM_SET_TSS_ADDR");
    if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) die("KVM_CREATE_IRQCHIP");
    struct kvm_pit_config pit = {0};
    if (ioctl(vm, KVM_CREATE_PIT2, &pit) < 0) die("KVM_CREATE_PIT2");

    void *low_ram = map_anonymous(LOW_RAM_SIZE);
    set_region(vm, 0, 0, LOW_RAM_SIZE, low_ram, 0);
    set_region(vm, 1, FOUR_GIB - image_size, image_size, image, 1);

    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) die("KVM_CREATE_VCPU");

    // The host's supported CPUID, as cprvmm gives it (filtered) to its vCPUs.
    int nent = 256;
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + (size_t)nent * sizeof(struct kvm_cpuid_entry2));
    if (!cpuid) fail("out of memory");
    cpuid->nent = (uint32_t)nent;
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
    if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0) die("KVM_SET_CPUID2");
    free(cpuid);

    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < (int)sizeof(struct kvm_run)) die("KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) die("mmap kvm_run");

    // The vCPU starts in its reset state: real mode, CS base 0xFFFF0000, IP 0xFFF0.
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
