// Guest-physical layout shared by the VMM (Swift imports these macros) and the guest
// programs (the .S files include this header). Documented in docs/guest.md.
#ifndef GUEST_LAYOUT_H
#define GUEST_LAYOUT_H

#define GUEST_BOOT_INFO 0x500          // struct described by the BI_* offsets
#define GUEST_GDT 0x1000               // flat GDT: null, kernel code/data, user code/data, TSSs
#define GUEST_TSS 0x2000               // one 128-byte TSS per vCPU
#define GUEST_TSS_STRIDE 128
#define GUEST_IDT 0x4000               // 256 gates (built-in guest only)
#define GUEST_STATUS 0x5000            // per-vCPU status records: heartbeat, ticks, ...
#define GUEST_STATUS_STRIDE 64
#define GUEST_SHARED_DATA 0x6000       // built-in guest's variables and line buffers
#define GUEST_KERNEL_STACKS 0x8000     // CPL0 stacks (TSS RSP0), one per vCPU
#define GUEST_KERNEL_STACK_SIZE 512
#define GUEST_CODE 0x100000            // where the built-in guest is loaded
#define GUEST_PAGE_TABLES 0x200000     // PML4, PDPT, then one page directory per GiB
#define GUEST_PAGE_TABLES_END 0x380000
#define GUEST_USER_STACKS 0x380000     // one stack per vCPU (stack of vCPU i ends at base + (i+1)*size)
#define GUEST_USER_STACK_SIZE 0x2000
#define GUEST_RESERVED_END 0x800000    // everything below belongs to the boot structures above
#define GUEST_MAX_VCPUS 64

#define GUEST_SEL_KERNEL_CODE 0x08
#define GUEST_SEL_KERNEL_DATA 0x10
#define GUEST_SEL_USER_CODE 0x1b       // GDT index 3, RPL 3
#define GUEST_SEL_USER_DATA 0x23       // GDT index 4, RPL 3
#define GUEST_SEL_TSS_BASE 0x28        // vCPU i: 0x28 + 16 * i

// Boot information (little-endian u64 fields at GUEST_BOOT_INFO + offset).
#define BI_MAGIC 0                     // "CPRVMMBI"
#define BI_MAGIC_VALUE 0x49424d4d56525043
#define BI_TSC_KHZ 8
#define BI_CPU_COUNT 16
#define BI_MODE 24                     // built-in guest: 0 = sleep, 1 = spin
#define BI_RAM_COUNT 32
#define BI_RAM_RANGES 40               // up to 4 x {start, end}
#define BI_FILL_COUNT 104
#define BI_FILL_RANGES 112             // up to 4 x {start, end}, 4 KiB aligned
#define BI_MAX_RANGES 4
#define BI_DISK_BAR 176                // built-in guest: the first virtio-blk's BAR4 (0: no disk)
#define BI_DISK_SECTORS 184            // its capacity in 512-byte sectors
#define BI_DISK_READ_ONLY 192          // 1 when the drive is read-only
#define BI_DISK_MODE 200               // 0 write and check; 1 randread, 2 randwrite, 3 seqread, 4 seqwrite
#define BI_NET_BAR 208                 // built-in guest: the first virtio-net's BAR4 (0: no NIC)
#define BI_NET_IP 216                  // its IPv4 address, 4 bytes in network order
#define BI_DIRTY_RATE 224              // built-in guest: pages of the dirty area to rewrite per second (0: off)
#define BI_DIRTY_START 232             // the dirty area: free RAM above the fill ranges, 4 KiB aligned
#define BI_DIRTY_END 240
#define BI_SIZE 248

// Status record fields (u64), vCPU i at GUEST_STATUS + i * GUEST_STATUS_STRIDE.
#define ST_HEARTBEAT 0                 // advanced on every pass of the guest's main loop
#define ST_TICKS 8                     // tick lines printed (vCPU 0) / ticks observed (others)
#define ST_PASSES 16                   // complete verifications of the pattern (vCPU 0)
#define ST_CORRUPTIONS 24              // mismatches found (vCPU 0)
#define ST_VERIFIED 32                 // bytes verified in total (vCPU 0)
#define ST_DISK_OPS 40                 // disk requests completed and checked (vCPU 0)
#define ST_DISK_WORST_US 48            // longest a disk request took, in microseconds (vCPU 0)
#define ST_DISK_ERRORS 56              // DISK CORRUPTION reports (vCPU 0)

// The built-in guest's virtio-blk queue and buffers (guest-physical, below GUEST_RESERVED_END).
#define GUEST_DISK_AREA 0x400000
#define GUEST_DISK_BAR4 0xe0000000     // where the VMM places the disk's BARs for the built-in guest
#define GUEST_DISK_BAR1 0xe0010000
#define GUEST_DISK_INTERRUPTS (GUEST_SHARED_DATA + 0x90)  // u64: disk MSI-X interrupts taken (sleep mode)

// The built-in guest's virtio-net queues and buffers, and its counters (u64) for the host.
#define GUEST_NET_AREA 0x600000
#define GUEST_NET_BAR4 0xe0020000      // where the VMM places the NIC's BARs for the built-in guest
#define GUEST_NET_BAR1 0xe0030000
#define GUEST_NET_FRAMES_IN (GUEST_SHARED_DATA + 0xc0)   // frames received
#define GUEST_NET_FRAMES_OUT (GUEST_SHARED_DATA + 0xc8)  // replies sent (ARP, ICMP echo, UDP echo)
#define GUEST_NET_MALFORMED (GUEST_SHARED_DATA + 0xd0)   // malformed frames seen
#define GUEST_NET_TX_DROPPED (GUEST_SHARED_DATA + 0xd8)  // replies not sent: every transmit slot busy

// The built-in guest's dirtying workload (BI_DIRTY_RATE): its counters (u64) for the host.
// Sweep n (from 1) stores n in word 0 of each page of the dirty area in turn, after checking
// that the word holds n - 1. The cursor is not stored: it is PAGES - SWEEPS * (pages in the area).
#define GUEST_DIRTY_PAGES (GUEST_SHARED_DATA + 0xe8)     // pages written in total
#define GUEST_DIRTY_SWEEPS (GUEST_SHARED_DATA + 0xf0)    // sweeps over the whole area completed

// Built-in guest blob header: u32 fields at the start of the blob.
#define BG_MAGIC_VALUE 0x47525043      // "CPRG"
#define BG_USER_ENTRY 4
#define BG_GP_HANDLER 8
#define BG_IRQ_RETURN 12
#define BG_IPI_HANDLER 16
#define BG_FATAL_STUBS 20              // 32 stubs of 8 bytes, one per exception vector
#define BG_DISK_HANDLER 24             // the disk's MSI-X vector
#define BG_HEADER_SIZE 28
#define BG_IPI_VECTOR 0x30
#define BG_DISK_VECTOR 0x31

// The pattern the built-in guest writes: the u64 at guest-physical address a is
// (a * PATTERN_MULTIPLIER) ^ PATTERN_XOR.
#define PATTERN_MULTIPLIER 0x9E3779B97F4A7C15
#define PATTERN_XOR 0x5A5A5A5A5A5A5A5A

#endif
