// The built-in guest: proves a VM is alive and its memory intact.
//
// Loaded at GUEST_CODE and entered by the VMM directly at CPL3 in 64-bit mode with IOPL=3,
// RDI = boot info, RSI = vCPU index.
// On this host KVM emulates every CPL0 instruction (~1 us each) but runs CPL3 natively, so
// all the work happens here in user mode; the CPL0 code is three tiny handlers:
//   - #GP: performs the port I/O, cli/sti and `hlt` (the sleep primitive) user mode traps on
//   - IRQ return: the PIC runs in auto-EOI mode, so timer interrupts need no handling
//   - IPI: acknowledges the LAPIC (vCPU 0 wakes the others with an IPI every tick)
// Any other exception halts the vCPU with interrupts off; the VMM reports it.
//
// vCPU 0 fills the fill ranges with a pattern, then every ~1 ms prints "tick N" on the
// 16550 at 0x3f8 (every 1000th line adds counters), re-verifies the pattern continuously
// and prints "MEMORY CORRUPTION at 0x..." on a mismatch, and echoes serial input lines.
// Other vCPUs count the ticks they observe. Everything advances a heartbeat in the status
// page (GUEST_STATUS) that a host can sample without any exit.
//
// With a virtio-blk disk (BI_DISK_BAR), vCPU 0 also drives it, one request at a time and
// polled: it writes a sequence-numbered 4 KiB block, reads it back and checks it (a flush
// every 64 blocks), cycling over the first 1 MiB of the disk. A lost, repeated, misdirected
// or failed completion, or data that differs, prints "DISK CORRUPTION: ..." and stops the
// workload. Requests done and the longest one (us) are in the status record; every 1000th
// tick line adds the requests done and the longest one since the line before. BI_DISK_MODE
// selects a benchmark instead: 4 KiB random reads or writes over the whole disk, or 1 MiB
// sequential ones, unchecked.
//
// With a virtio-net NIC (BI_NET_BAR), vCPU 0 also answers ARP, ICMP echo and UDP echo at
// BI_NET_IP (builtin_guest_net.inc); every 1000th tick line adds frames in and replies out.
//
// With BI_DIRTY_RATE > 0, vCPU 0 also rewrites that many pages of the dirty area
// (BI_DIRTY_START..BI_DIRTY_END) per second, a few every tick, in sweeps over the area: sweep n
// (from 1) checks that word 0 of the page holds n - 1 and stores n. A page that a migration
// or live update failed to carry over holds an older number and is reported as MEMORY
// CORRUPTION on the next pass over it. Every 1000th tick line adds the pages written.
//
// The code is position-independent (no absolute relocations): the only absolute addresses
// are the fixed guest-physical ones from guest_layout.h.

#include "guest_layout.h"

#define COM1 0x3f8
#define SHARED_FILL_DONE (GUEST_SHARED_DATA + 0x00)
#define SHARED_RX_LEN (GUEST_SHARED_DATA + 0x08)
#define SHARED_PERIOD (GUEST_SHARED_DATA + 0x10)
#define SHARED_RANGE (GUEST_SHARED_DATA + 0x18)
#define SHARED_DISK_SEQ (GUEST_SHARED_DATA + 0x20)      // the block being written and checked
#define SHARED_DISK_AVAIL (GUEST_SHARED_DATA + 0x28)    // requests made available
#define SHARED_DISK_USED (GUEST_SHARED_DATA + 0x30)     // completions taken
#define SHARED_DISK_STATE (GUEST_SHARED_DATA + 0x38)    // 0 no disk, 1 running, 2 stopped on an error
#define SHARED_RX_BUF (GUEST_SHARED_DATA + 0x40)
#define SHARED_DISK_WINDOW_WORST (GUEST_SHARED_DATA + 0x80)  // longest request (us) since the last counters line
#define SHARED_DISK_RANDOM (GUEST_SHARED_DATA + 0x88)        // xorshift state of the random benchmark modes
#define SHARED_NET_STATE (GUEST_SHARED_DATA + 0x98)     // 0 no NIC, 1 running
#define SHARED_NET_RX_USED (GUEST_SHARED_DATA + 0xa0)   // receive completions taken
#define SHARED_NET_RX_AVAIL (GUEST_SHARED_DATA + 0xa8)  // receive buffers made available
#define SHARED_NET_TX_AVAIL (GUEST_SHARED_DATA + 0xb0)  // frames made available for transmit
#define SHARED_NET_MAC (GUEST_SHARED_DATA + 0xb8)       // 6 bytes, from the device's configuration
#define SHARED_NET_LINK (GUEST_SHARED_DATA + 0xe0)      // the link status last seen: 1 up, 0 down
#define SHARED_DIRTY_CREDIT (GUEST_SHARED_DATA + 0xf8)  // BI_DIRTY_RATE added per tick; 1000 buys a page
#define RX_MAX 64
#define SHARED_OUT_BUF (GUEST_SHARED_DATA + 0x100)
#define LAPIC_BASE 0xfee00000
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LOW 0x300
#define SLEEP_CHUNKS 16
#define DISK_DESC (GUEST_DISK_AREA + 0x0000)
#define DISK_AVAIL (GUEST_DISK_AREA + 0x1000)
#define DISK_USED (GUEST_DISK_AREA + 0x2000)
#define DISK_HEADER (GUEST_DISK_AREA + 0x3000)
#define DISK_STATUS (GUEST_DISK_AREA + 0x3100)
#define DISK_WRITE_BUF (GUEST_DISK_AREA + 0x4000)
#define DISK_READ_BUF (GUEST_DISK_AREA + 0x5000)
#define DISK_BIG_BUF (GUEST_DISK_AREA + 0x100000)     // 1 MiB, for the sequential benchmark modes
#define DISK_QUEUE_SIZE 16
#define DISK_MAX_BLOCKS 256
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4

    .section .rodata.cprvmm_guest, "a"
    .p2align 12
    .globl cprvmm_builtin_guest_start
    .globl cprvmm_builtin_guest_end
cprvmm_builtin_guest_start:
blob:
    .long BG_MAGIC_VALUE
    .long user_entry - blob
    .long gp_handler - blob
    .long irq_return - blob
    .long ipi_handler - blob
    .long fatal_stubs - blob
    .long disk_irq_handler - blob

// ---------------------------------------------------------------- CPL0 handlers
    .code64
    .p2align 3
fatal_stubs:
    .irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .p2align 3
    pushq $\vec
    jmp fatal_common
    .endr

fatal_common:
    cli
    hlt
    jmp fatal_common

// #GP from user mode: emulates the privileged instructions the user program uses.
// With IOPL=3 (which cprvmm sets) real hardware runs in/out/cli/sti in user mode directly;
// KVM on this project's hosts (kvm_pvm) ignores IOPL for user mode and raises #GP instead,
// so the handler performs the instruction at CPL0 and skips it. Handled: `in %dx,%al`,
// `out %al,%dx`, `rep outsb`, `hlt` (sleep until an interrupt), `sti`, `cli`.
// Frame after the two pushes: rcx 0, rax 8, error code 16, RIP 24, CS 32, RFLAGS 40.
#define F_RCX 0
#define F_RAX 8
#define F_RIP 24
#define F_RFLAGS 40
gp_handler:
    push %rax
    push %rcx
    mov F_RIP(%rsp), %rcx
    movzbl (%rcx), %eax
    cmp $0xf3, %al
    je gp_rep
    cmp $0xec, %al
    je gp_in
    cmp $0xee, %al
    je gp_out
    cmp $0xf4, %al
    je gp_hlt
    cmp $0xfb, %al
    je gp_sti
    cmp $0xfa, %al
    je gp_cli
    jmp gp_fatal
gp_rep:
    cmpb $0x6e, 1(%rcx)          // rep outsb
    jne gp_fatal
    mov F_RAX(%rsp), %rax
    mov F_RCX(%rsp), %rcx
    rep outsb
    mov %rcx, F_RCX(%rsp)
    addq $2, F_RIP(%rsp)
    jmp gp_return
gp_in:
    mov F_RAX(%rsp), %rax
    in %dx, %al
    mov %rax, F_RAX(%rsp)
    jmp gp_skip1
gp_out:
    mov F_RAX(%rsp), %rax
    out %al, %dx
    jmp gp_skip1
gp_sti:
    orq $0x200, F_RFLAGS(%rsp)
    jmp gp_skip1
gp_cli:
    andq $~0x200, F_RFLAGS(%rsp)
    jmp gp_skip1
gp_hlt:
    incq F_RIP(%rsp)
    pop %rcx
    pop %rax
    add $8, %rsp                 // drop the error code
    sti                          // the interrupt shadow makes sti;hlt atomic: no lost wake-up
    hlt
    iretq
gp_skip1:
    incq F_RIP(%rsp)
gp_return:
    pop %rcx
    pop %rax
    add $8, %rsp
    iretq
gp_fatal:
    pop %rcx
    pop %rax
    push $13
    jmp fatal_common

irq_return:
    iretq

ipi_handler:
    push %rax
    mov $(LAPIC_BASE + LAPIC_EOI), %eax
    movl $0, (%rax)
    pop %rax
    iretq

// The disk's MSI-X vector (sleep mode): counts it for the host to see, acknowledges it.
disk_irq_handler:
    incq GUEST_DISK_INTERRUPTS
    jmp ipi_handler

// ---------------------------------------------------------------- CPL3 program
// Registers kept across the loop: r15 = vCPU index, r14 = own status record,
// r13 = verify cursor, r12 = PATTERN_MULTIPLIER, rbx = PATTERN_XOR, rbp = next tick deadline (TSC).
user_entry:
    cld
    mov %rsi, %r15
    mov %rsi, %rax
    shl $6, %rax
    lea GUEST_STATUS(%rax), %r14
    movabs $PATTERN_MULTIPLIER, %r12
    movabs $PATTERN_XOR, %rbx
    test %r15, %r15
    jnz ap_main

// ---- vCPU 0
bsp_main:
    call init_uart
    call init_timer
    call fill_memory
    movq $1, SHARED_FILL_DONE
    lea msg_ready(%rip), %rsi
    mov $msg_ready_len, %ecx
    call serial_write
    call disk_init
    call net_init
    call reset_cursor
    // ticks are paced by the TSC: period = tsc_khz cycles = 1 ms
    mov GUEST_BOOT_INFO + BI_TSC_KHZ, %rax
    mov %rax, SHARED_PERIOD
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    add SHARED_PERIOD, %rax
    mov %rax, %rbp
    movabs $0x2545F4914F6CDD1D, %rax
    mov %rax, SHARED_DISK_RANDOM
    cmpq $0, GUEST_BOOT_INFO + BI_MODE
    jne bsp_loop
    sti                          // sleep mode: the PIT wakes us every millisecond

bsp_loop:
    incq ST_HEARTBEAT(%r14)
    cmpq $0, GUEST_BOOT_INFO + BI_FILL_COUNT
    je 2f
    mov $1, %ecx
    cmpq $0, GUEST_BOOT_INFO + BI_MODE
    jne 1f
    mov $SLEEP_CHUNKS, %ecx
1:  push %rcx
    call verify_chunk
    pop %rcx
    dec %ecx
    jnz 1b
2:  call disk_step
    call net_step
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    // Tick when within half a period of the deadline: the 1 kHz PIT and the TSC drift
    // apart slightly, and a wake-up just short of the deadline must not skip a tick.
    mov SHARED_PERIOD, %rcx
    shr $1, %rcx
    add %rcx, %rax
    mov %rbp, %rdx
    sub %rax, %rdx               // how far ahead the deadline lies
    jbe 4f                       // reached: tick
    mov SHARED_PERIOD, %rcx
    imul $100, %rcx
    cmp %rcx, %rdx
    jb 3f
    // More than 100 periods ahead: the TSC went back. A VM restored on another host sees
    // that host's TSC where the hypervisor does not offset user-mode RDTSC (kvm_pvm does
    // not), so pace the ticks from now instead of waiting for the old host's time.
    mov %rax, %rbp
4:  call tick
3:  cmpq $0, GUEST_BOOT_INFO + BI_MODE
    jne bsp_loop
    hlt                          // -> #GP -> sti;hlt at CPL0 until the next timer interrupt
    jmp bsp_loop

// One tick: advance the deadline, print the line, poll input, wake the other vCPUs.
tick:
    mov SHARED_PERIOD, %rcx
    add %rcx, %rbp
    // After a long pause (VM stopped, host busy) do not print a burst to catch up.
    mov %rcx, %rdx
    imul $100, %rdx
    add %rbp, %rdx
    cmp %rdx, %rax
    jb 1f
    lea (%rax, %rcx), %rbp
1:  incq ST_TICKS(%r14)
    call dirty_step
    // Input is polled every 8th tick: each poll is a trapped port read, and 8 ms is quick enough for typing.
    testq $7, ST_TICKS(%r14)
    jnz 4f
    call poll_input
    // The link status is an MMIO read no vCPU bridge can answer: one during a live update
    // holds the vCPU until the new image runs, so it is read only about once a second.
    testq $1023, ST_TICKS(%r14)
    jnz 4f
    call net_link_check
4:
    mov $SHARED_OUT_BUF, %rdi
    lea msg_tick(%rip), %rsi
    mov $msg_tick_len, %ecx
    rep movsb
    mov ST_TICKS(%r14), %rax
    call put_decimal
    // every 1000th line: counters
    mov ST_TICKS(%r14), %rax
    xor %edx, %edx
    mov $1000, %ecx
    div %rcx
    test %rdx, %rdx
    jnz 2f
    lea msg_passes(%rip), %rsi
    mov $msg_passes_len, %ecx
    rep movsb
    mov ST_PASSES(%r14), %rax
    call put_decimal
    lea msg_corruptions(%rip), %rsi
    mov $msg_corruptions_len, %ecx
    rep movsb
    mov ST_CORRUPTIONS(%r14), %rax
    call put_decimal
    cmpq $0, SHARED_DISK_STATE
    je 5f
    lea msg_disk_ops(%rip), %rsi
    mov $msg_disk_ops_len, %ecx
    rep movsb
    mov ST_DISK_OPS(%r14), %rax
    call put_decimal
    lea msg_disk_worst(%rip), %rsi
    mov $msg_disk_worst_len, %ecx
    rep movsb
    mov SHARED_DISK_WINDOW_WORST, %rax
    movq $0, SHARED_DISK_WINDOW_WORST
    call put_decimal
5:  cmpq $0, SHARED_NET_STATE
    je 6f
    lea msg_net_in(%rip), %rsi
    mov $msg_net_in_len, %ecx
    rep movsb
    mov GUEST_NET_FRAMES_IN, %rax
    call put_decimal
    lea msg_net_out(%rip), %rsi
    mov $msg_net_out_len, %ecx
    rep movsb
    mov GUEST_NET_FRAMES_OUT, %rax
    call put_decimal
6:  cmpq $0, GUEST_BOOT_INFO + BI_DIRTY_RATE
    je 7f
    lea msg_dirty_pages(%rip), %rsi
    mov $msg_dirty_pages_len, %ecx
    rep movsb
    mov GUEST_DIRTY_PAGES, %rax
    call put_decimal
7:  cmpq $1, GUEST_BOOT_INFO + BI_CPU_COUNT
    jbe 2f
    lea msg_cpu1(%rip), %rsi
    mov $msg_cpu1_len, %ecx
    rep movsb
    mov GUEST_STATUS + GUEST_STATUS_STRIDE + ST_TICKS, %rax
    call put_decimal
2:  movb $'\n', (%rdi)
    inc %rdi
    call flush_out
    cmpq $1, GUEST_BOOT_INFO + BI_CPU_COUNT
    jbe 3f
    cmpq $0, GUEST_BOOT_INFO + BI_MODE
    jne 3f
    mov $(LAPIC_BASE + LAPIC_ICR_LOW), %eax
    movl $(0x000C4000 | BG_IPI_VECTOR), (%rax)   // fixed IPI to all but self
3:  ret

// Writes SHARED_OUT_BUF up to %rdi to the UART in one string I/O exit.
flush_out:
    mov $SHARED_OUT_BUF, %rsi
    mov %rdi, %rcx
    sub %rsi, %rcx
    // fall through
// serial_write: %rsi = bytes, %rcx = count
serial_write:
    mov $COM1, %dx
    rep outsb
    ret

// Appends the decimal form of %rax at %rdi (advancing %rdi). Clobbers rax, rcx, rdx, rsi.
put_decimal:
    mov %rsp, %rsi
    sub $32, %rsp
    mov $10, %ecx
1:  xor %edx, %edx
    div %rcx
    add $'0', %dl
    dec %rsi
    mov %dl, (%rsi)
    test %rax, %rax
    jnz 1b
2:  movb (%rsi), %al
    mov %al, (%rdi)
    inc %rdi
    inc %rsi
    lea 32(%rsp), %rax
    cmp %rax, %rsi
    jb 2b
    add $32, %rsp
    ret

// Appends "0x" and 16 hex digits of %rax at %rdi. Clobbers rcx, rdx.
put_hex:
    movw $0x7830, (%rdi)         // "0x"
    add $2, %rdi
    mov $16, %ecx
1:  rol $4, %rax
    mov %eax, %edx
    and $15, %edx
    cmp $10, %edx
    jb 2f
    add $('a' - '0' - 10), %edx
2:  add $'0', %edx
    mov %dl, (%rdi)
    inc %rdi
    dec %ecx
    jnz 1b
    ret

// 8N1, FIFOs on and cleared, DTR+RTS, no UART interrupts (the guest polls).
init_uart:
    mov $(COM1 + 3), %dx
    mov $0x03, %al
    out %al, %dx
    mov $(COM1 + 2), %dx
    mov $0x07, %al
    out %al, %dx
    mov $(COM1 + 4), %dx
    mov $0x03, %al
    out %al, %dx
    mov $(COM1 + 1), %dx
    xor %eax, %eax
    out %al, %dx
    ret

// PIC pair remapped to vectors 0x20/0x28 in auto-EOI mode; PIT channel 0 at 1 kHz.
// Sleep mode unmasks only IRQ 0; spin mode masks everything. With more than one vCPU in
// sleep mode the LAPIC is enabled so vCPU 0 can send wake-up IPIs.
init_timer:
    mov $0x20, %dx; mov $0x11, %al; out %al, %dx
    mov $0x21, %dx; mov $0x20, %al; out %al, %dx
    mov $0x21, %dx; mov $0x04, %al; out %al, %dx
    mov $0x21, %dx; mov $0x03, %al; out %al, %dx
    mov $0xa0, %dx; mov $0x11, %al; out %al, %dx
    mov $0xa1, %dx; mov $0x28, %al; out %al, %dx
    mov $0xa1, %dx; mov $0x02, %al; out %al, %dx
    mov $0xa1, %dx; mov $0x03, %al; out %al, %dx
    mov $0xa1, %dx; mov $0xff, %al; out %al, %dx
    cmpq $0, GUEST_BOOT_INFO + BI_MODE
    je 1f
    mov $0x21, %dx; mov $0xff, %al; out %al, %dx
    ret
1:  mov $0x21, %dx; mov $0xfe, %al; out %al, %dx
    mov $0x43, %dx; mov $0x34, %al; out %al, %dx
    mov $0x40, %dx; mov $0xa9, %al; out %al, %dx     // 1193 = 0x04a9: 1193182 Hz / 1193 = 1000 Hz
    mov $0x40, %dx; mov $0x04, %al; out %al, %dx
    cmpq $1, GUEST_BOOT_INFO + BI_CPU_COUNT
    jbe 2f
    call enable_lapic
2:  ret

enable_lapic:
    mov $(LAPIC_BASE + LAPIC_SVR), %eax
    movl $0x1ff, (%rax)
    ret

// Writes the pattern over every fill range.
fill_memory:
    xor %r8d, %r8d
1:  cmp GUEST_BOOT_INFO + BI_FILL_COUNT, %r8
    jae 4f
    mov %r8, %r9
    shl $4, %r9
    mov GUEST_BOOT_INFO + BI_FILL_RANGES(%r9), %rdi
    mov GUEST_BOOT_INFO + BI_FILL_RANGES + 8(%r9), %r10
2:  cmp %r10, %rdi
    jae 3f
    mov %rdi, %rax
    imul %r12, %rax
    xor %rbx, %rax
    mov %rax, (%rdi)
    add $8, %rdi
    jmp 2b
3:  inc %r8
    jmp 1b
4:  ret

// r13 := start of the first fill range.
reset_cursor:
    movq $0, SHARED_RANGE
    mov GUEST_BOOT_INFO + BI_FILL_RANGES, %r13
    ret

// Verifies the 4 KiB at r13 and advances r13 through the fill ranges, wrapping at the end.
verify_chunk:
    mov %r13, %rdi
    lea 4096(%r13), %r9
1:  mov %rdi, %rax
    imul %r12, %rax
    xor %rbx, %rax
    cmp (%rdi), %rax
    jne report_corruption
    add $8, %rdi
    cmp %r9, %rdi
    jb 1b
chunk_done:
    addq $4096, ST_VERIFIED(%r14)
    mov %r9, %r13
    mov SHARED_RANGE, %r8
    shl $4, %r8
    cmp GUEST_BOOT_INFO + BI_FILL_RANGES + 8(%r8), %r13
    jb 3f
    // end of this range: next range, or wrap around and count a pass
    mov SHARED_RANGE, %r8
    inc %r8
    cmp GUEST_BOOT_INFO + BI_FILL_COUNT, %r8
    jb 2f
    incq ST_PASSES(%r14)
    jmp reset_cursor
2:  mov %r8, SHARED_RANGE
    shl $4, %r8
    mov GUEST_BOOT_INFO + BI_FILL_RANGES(%r8), %r13
3:  ret

// Prints "MEMORY CORRUPTION at 0x<gpa> (expected ..., found ...)" and skips the rest of the chunk.
report_corruption:
    incq ST_CORRUPTIONS(%r14)
    push %r9
    push %rax                    // expected
    push %rdi                    // address
    mov $SHARED_OUT_BUF, %rdi
    lea msg_corrupt(%rip), %rsi
    mov $msg_corrupt_len, %ecx
    rep movsb
    mov (%rsp), %rax
    call put_hex
    lea msg_expected(%rip), %rsi
    mov $msg_expected_len, %ecx
    rep movsb
    mov 8(%rsp), %rax
    call put_hex
    lea msg_found(%rip), %rsi
    mov $msg_found_len, %ecx
    rep movsb
    mov (%rsp), %rax
    mov (%rax), %rax
    call put_hex
    movw $0x0a29, (%rdi)         // ")\n"
    add $2, %rdi
    call flush_out
    pop %rdi
    pop %rax
    pop %r9
    jmp chunk_done

// ---- the dirtying workload (vCPU 0, from tick). Preserves the main loop's registers;
// clobbers rax, rcx, rdx, rsi, rdi and r8-r11.

// Writes BI_DIRTY_RATE / 1000 pages (the remainder carried over to the next tick): at about
// 1000 ticks a second, BI_DIRTY_RATE pages a second. Ticks skipped after a pause are not
// made up for, so the rate is per second of the guest's running time.
dirty_step:
    mov GUEST_BOOT_INFO + BI_DIRTY_RATE, %rax
    test %rax, %rax
    jz 9f
    add SHARED_DIRTY_CREDIT, %rax
1:  cmp $1000, %rax
    jb 8f
    sub $1000, %rax
    push %rax
    call dirty_page
    pop %rax
    jmp 1b
8:  mov %rax, SHARED_DIRTY_CREDIT
9:  ret

// Writes the page at the cursor, sweep n = GUEST_DIRTY_SWEEPS + 1: pages behind the cursor
// hold n, pages ahead n - 1 (0 in sweep 1: fresh RAM), which is checked before n is stored.
// The cursor is GUEST_DIRTY_PAGES - GUEST_DIRTY_SWEEPS * (pages in the area).
dirty_page:
    mov GUEST_BOOT_INFO + BI_DIRTY_START, %r8
    mov GUEST_BOOT_INFO + BI_DIRTY_END, %r9
    mov %r9, %rcx
    sub %r8, %rcx
    shr $12, %rcx                // pages in the area
    mov GUEST_DIRTY_SWEEPS, %rsi // n - 1
    mov %rsi, %rax
    imul %rcx, %rax
    mov GUEST_DIRTY_PAGES, %rdi
    sub %rax, %rdi
    shl $12, %rdi
    add %r8, %rdi                // the page
    lea 1(%rsi), %rax            // n
    cmp (%rdi), %rsi
    jne dirty_mismatch
dirty_store:
    mov %rax, (%rdi)
    incq GUEST_DIRTY_PAGES
    add $4096, %rdi
    cmp %r9, %rdi
    jb 1f
    incq GUEST_DIRTY_SWEEPS      // the next page is the area's first again
1:  ret

// Word 0 of the page at %rdi is not n - 1 (%rsi): counted as a corruption and reported as
// "MEMORY CORRUPTION at 0x<gpa> (expected n - 1, found ...)" (the first 100 corruptions,
// then every 1000th: a page range a migration lost could otherwise print for seconds);
// then n (%rax) is stored anyway and the sweep goes on.
dirty_mismatch:
    incq ST_CORRUPTIONS(%r14)
    push %rax
    push %r9
    push %rdi
    push %rsi
    mov ST_CORRUPTIONS(%r14), %rax
    cmp $100, %rax
    jbe 1f
    xor %edx, %edx
    mov $1000, %ecx
    div %rcx
    test %rdx, %rdx
    jnz 2f
1:  mov $SHARED_OUT_BUF, %rdi
    lea msg_corrupt(%rip), %rsi
    mov $msg_corrupt_len, %ecx
    rep movsb
    mov 8(%rsp), %rax            // the page
    call put_hex
    lea msg_expected(%rip), %rsi
    mov $msg_expected_len, %ecx
    rep movsb
    mov (%rsp), %rax             // n - 1
    call put_hex
    lea msg_found(%rip), %rsi
    mov $msg_found_len, %ecx
    rep movsb
    mov 8(%rsp), %rax
    mov (%rax), %rax
    call put_hex
    movw $0x0a29, (%rdi)         // ")\n"
    add $2, %rdi
    call flush_out
2:  pop %rsi
    pop %rdi
    pop %r9
    pop %rax
    jmp dirty_store

// Reads whatever the UART holds; a completed line is echoed back as "echo: LINE".
poll_input:
1:  mov $(COM1 + 5), %dx
    in %dx, %al
    test $1, %al
    jz 4f
    mov $COM1, %dx
    in %dx, %al
    cmp $'\r', %al
    je 2f
    cmp $'\n', %al
    je 2f
    mov SHARED_RX_LEN, %rcx
    cmp $RX_MAX, %rcx
    jae 1b
    mov %al, SHARED_RX_BUF(%rcx)
    incq SHARED_RX_LEN
    jmp 1b
2:  cmpq $0, SHARED_RX_LEN       // ignore the empty line of a CR LF pair
    je 1b
    mov $SHARED_OUT_BUF, %rdi
    lea msg_echo(%rip), %rsi
    mov $msg_echo_len, %ecx
    rep movsb
    mov $SHARED_RX_BUF, %rsi
    mov SHARED_RX_LEN, %rcx
    rep movsb
    movb $'\n', (%rdi)
    inc %rdi
    call flush_out
    movq $0, SHARED_RX_LEN
    jmp 1b
4:  ret

// ---- the disk workload (vCPU 0). Registers of the main loop are preserved; rax, rcx,
// rdx, rsi, rdi and r8-r11 are not.

// Sets the device up as a virtio 1.x driver does: features VERSION_1 and FLUSH, queue 0 of
// DISK_QUEUE_SIZE entries in GUEST_DISK_AREA, no interrupts (the guest polls).
disk_init:
    mov GUEST_BOOT_INFO + BI_DISK_BAR, %r8
    test %r8, %r8
    jz 9f
    cmpq $0, GUEST_BOOT_INFO + BI_DISK_READ_ONLY
    jne 8f
    cmpq $8, GUEST_BOOT_INFO + BI_DISK_SECTORS
    jb 9f
    movb $0, 0x14(%r8)           // reset
    movb $1, 0x14(%r8)           // ACKNOWLEDGE
    movb $3, 0x14(%r8)           // DRIVER
    movl $1, 0x08(%r8)
    movl $1, 0x0c(%r8)           // VIRTIO_F_VERSION_1 (bit 32)
    movl $0, 0x08(%r8)
    movl $0x200, 0x0c(%r8)       // VIRTIO_BLK_F_FLUSH (bit 9)
    movb $0x0b, 0x14(%r8)        // FEATURES_OK
    testb $8, 0x14(%r8)
    jz 7f
    movw $0, 0x16(%r8)
    movw $DISK_QUEUE_SIZE, 0x18(%r8)
    movl $DISK_DESC, 0x20(%r8)
    movl $0, 0x24(%r8)
    movl $DISK_AVAIL, 0x28(%r8)
    movl $0, 0x2c(%r8)
    movl $DISK_USED, 0x30(%r8)
    movl $0, 0x34(%r8)
    // Sleep mode waits for a completion in HLT, woken by MSI-X vector 0 (entry 0 of the
    // table in BAR1: the LAPIC of vCPU 0, BG_DISK_VECTOR; the VMM enabled MSI-X). Spin mode
    // polls with interrupts off and asks for none.
    movw $0xffff, 0x10(%r8)      // msix_config: no vector
    movw $0xffff, 0x1a(%r8)      // queue_msix_vector
    movw $1, DISK_AVAIL          // VIRTQ_AVAIL_F_NO_INTERRUPT
    cmpq $0, GUEST_BOOT_INFO + BI_MODE
    jne 1f
    mov $GUEST_DISK_BAR1, %eax
    movl $LAPIC_BASE, (%rax)     // message address
    movl $0, 4(%rax)
    movl $BG_DISK_VECTOR, 8(%rax) // message data: fixed delivery of the vector
    movl $0, 12(%rax)            // unmasked
    movw $0, 0x1a(%r8)           // queue 0 -> vector 0
    movw $0, DISK_AVAIL          // interrupts wanted
    call enable_lapic
    mov GUEST_BOOT_INFO + BI_DISK_BAR, %r8
1:  movw $1, 0x1c(%r8)           // queue_enable
    movb $0x0f, 0x14(%r8)        // DRIVER_OK
    testb $0x40, 0x14(%r8)       // DEVICE_NEEDS_RESET
    jnz 7f
    movq $1, SHARED_DISK_STATE
    lea msg_disk_ready(%rip), %rsi
    mov $msg_disk_ready_len, %ecx
    jmp serial_write
7:  lea msg_disk_refused(%rip), %rsi
    mov $msg_disk_refused_len, %ecx
    jmp serial_write
8:  lea msg_disk_read_only(%rip), %rsi
    mov $msg_disk_read_only_len, %ecx
    jmp serial_write
9:  ret

// One step: write block SEQ, flush every 64th, read it back, check it, SEQ += 1.
disk_step:
    cmpq $1, SHARED_DISK_STATE
    jne 9f
    cmpq $0, GUEST_BOOT_INFO + BI_DISK_MODE
    jne disk_bench_step
    mov $DISK_WRITE_BUF, %rdi
    call disk_pattern_fill
    call disk_block_sector
    mov $VIRTIO_BLK_T_OUT, %eax
    mov $DISK_WRITE_BUF, %esi
    xor %edx, %edx
    mov $4096, %ecx
    call disk_request
    jc 9f
    testq $63, SHARED_DISK_SEQ
    jnz 1f
    mov $VIRTIO_BLK_T_FLUSH, %eax
    call disk_request
    jc 9f
1:  call disk_block_sector
    mov $VIRTIO_BLK_T_IN, %eax
    mov $DISK_READ_BUF, %esi
    mov $2, %edx                 // VIRTQ_DESC_F_WRITE: the device fills it
    mov $4096, %ecx
    call disk_request
    jc 9f
    call disk_check
    jc 9f
    incq SHARED_DISK_SEQ
9:  ret

// %r8 := the first sector of block SEQ mod the block count (4 KiB blocks, at most 256).
disk_block_sector:
    mov GUEST_BOOT_INFO + BI_DISK_SECTORS, %rcx
    shr $3, %rcx
    cmp $DISK_MAX_BLOCKS, %rcx
    jbe 1f
    mov $DISK_MAX_BLOCKS, %ecx
1:  mov SHARED_DISK_SEQ, %rax
    xor %edx, %edx
    div %rcx
    lea (, %rdx, 8), %r8
    ret

// Benchmark modes (BI_DISK_MODE): 1 and 2 read and write 4 KiB at random 4 KiB-aligned places
// of the whole disk, 3 and 4 read and write it in order in 1 MiB requests (wrapping).
disk_bench_step:
    mov GUEST_BOOT_INFO + BI_DISK_MODE, %r9
    cmp $3, %r9
    jae 3f
    // xorshift64 for the block
    mov SHARED_DISK_RANDOM, %rax
    mov %rax, %rdx
    shl $13, %rdx
    xor %rdx, %rax
    mov %rax, %rdx
    shr $7, %rdx
    xor %rdx, %rax
    mov %rax, %rdx
    shl $17, %rdx
    xor %rdx, %rax
    mov %rax, SHARED_DISK_RANDOM
    mov GUEST_BOOT_INFO + BI_DISK_SECTORS, %rcx
    shr $3, %rcx
    xor %edx, %edx
    div %rcx
    lea (, %rdx, 8), %r8
    mov $4096, %ecx
    mov $DISK_READ_BUF, %esi
    jmp 4f
3:  mov GUEST_BOOT_INFO + BI_DISK_SECTORS, %rcx
    shr $11, %rcx                // 1 MiB chunks
    test %rcx, %rcx
    jz 9f
    mov SHARED_DISK_SEQ, %rax
    xor %edx, %edx
    div %rcx
    shl $11, %rdx
    mov %rdx, %r8
    incq SHARED_DISK_SEQ
    mov $(1 << 20), %ecx
    mov $DISK_BIG_BUF, %esi
4:  mov $VIRTIO_BLK_T_IN, %eax
    mov $2, %edx
    test $1, %r9                 // odd modes read, even ones write
    jnz 5f
    mov $VIRTIO_BLK_T_OUT, %eax
    xor %edx, %edx
5:  call disk_request
9:  ret

// Block SEQ's contents at %rdi: word 0 is SEQ, word i the pattern of (SEQ << 9) + i.
disk_pattern_fill:
    mov SHARED_DISK_SEQ, %rax
    mov %rax, (%rdi)
    mov $1, %ecx
1:  mov SHARED_DISK_SEQ, %rax
    shl $9, %rax
    add %rcx, %rax
    imul %r12, %rax
    xor %rbx, %rax
    mov %rax, (%rdi, %rcx, 8)
    inc %ecx
    cmp $512, %ecx
    jb 1b
    ret

// Compares DISK_READ_BUF with block SEQ's contents; CF set (and reported) on a difference.
disk_check:
    mov SHARED_DISK_SEQ, %rax
    cmp %rax, DISK_READ_BUF
    jne 2f
    mov $1, %ecx
1:  mov SHARED_DISK_SEQ, %rax
    shl $9, %rax
    add %rcx, %rax
    imul %r12, %rax
    xor %rbx, %rax
    cmp %rax, DISK_READ_BUF(, %rcx, 8)
    jne 2f
    inc %ecx
    cmp $512, %ecx
    jb 1b
    clc
    ret
2:  lea msg_disk_data(%rip), %rsi
    mov $msg_disk_data_len, %ecx
    jmp disk_fail

// Makes one request (type %eax at sector %r8; for reads and writes the buffer %rsi of %ecx
// bytes, with extra descriptor flags %edx), rings the doorbell and polls the used ring.
// Returns CF clear when exactly that request completed once, with status OK.
disk_request:
    mov %eax, DISK_HEADER
    movl $0, DISK_HEADER + 4
    mov %eax, %r9d               // type
    mov %edx, %r10d              // data flags
    mov %r8, DISK_HEADER + 8     // sector
    movb $0xff, DISK_STATUS
    // header -> [data ->] status, always from descriptor 0
    movq $DISK_HEADER, DISK_DESC
    movl $16, DISK_DESC + 8
    movw $1, DISK_DESC + 12      // VIRTQ_DESC_F_NEXT
    movw $1, DISK_DESC + 14
    cmp $VIRTIO_BLK_T_FLUSH, %r9d
    jne 2f
    movw $2, DISK_DESC + 14
    jmp 3f
2:  mov %rsi, DISK_DESC + 16
    mov %ecx, DISK_DESC + 24
    mov %r10d, %eax
    or $1, %eax                  // NEXT | data flags
    mov %ax, DISK_DESC + 28
    movw $2, DISK_DESC + 30
3:  movq $DISK_STATUS, DISK_DESC + 32
    movl $1, DISK_DESC + 40
    movw $2, DISK_DESC + 44      // VIRTQ_DESC_F_WRITE
    movw $0, DISK_DESC + 46
    mov SHARED_DISK_AVAIL, %rax
    mov %eax, %ecx
    and $(DISK_QUEUE_SIZE - 1), %ecx
    movw $0, DISK_AVAIL + 4(, %rcx, 2)
    inc %rax
    mov %rax, SHARED_DISK_AVAIL
    mov %ax, DISK_AVAIL + 2      // publish (x86 keeps stores in order)
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r11               // when the request was made
    mov GUEST_BOOT_INFO + BI_DISK_BAR, %r8
    movw $0, 0x3000(%r8)         // doorbell: an ioeventfd, no exit
    mov GUEST_BOOT_INFO + BI_TSC_KHZ, %r10
    imul $10000, %r10            // 10 s without a completion: the request is lost
4:  movzwl DISK_USED + 2, %eax
    mov SHARED_DISK_USED, %rcx
    cmp %cx, %ax
    jne 6f
    cmpq $0, GUEST_BOOT_INFO + BI_MODE
    jne 3f
    // Sleep until the completion's MSI (or, should it come between the check and the HLT,
    // the next timer tick).
    hlt
    jmp 10f
3:  pause
10: rdtsc
    shl $32, %rdx
    or %rdx, %rax
    sub %r11, %rax
    jns 5f
    add %rax, %r11               // the TSC went back (another host): count from now
    jmp 4b
5:  cmp %r10, %rax
    jb 4b
    lea msg_disk_lost(%rip), %rsi
    mov $msg_disk_lost_len, %ecx
    jmp disk_fail
6:  sub %cx, %ax
    cmp $1, %ax
    je 7f
    lea msg_disk_repeated(%rip), %rsi
    mov $msg_disk_repeated_len, %ecx
    jmp disk_fail
7:  and $(DISK_QUEUE_SIZE - 1), %ecx
    cmpl $0, DISK_USED + 4(, %rcx, 8)
    je 8f
    lea msg_disk_unknown(%rip), %rsi
    mov $msg_disk_unknown_len, %ecx
    jmp disk_fail
8:  incq SHARED_DISK_USED
    cmpb $0, DISK_STATUS
    je 9f
    lea msg_disk_status(%rip), %rsi
    mov $msg_disk_status_len, %ecx
    jmp disk_fail
9:  incq ST_DISK_OPS(%r14)
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    sub %r11, %rax
    jns 1f
    xor %eax, %eax
1:  imul $1000, %rax
    xor %edx, %edx
    divq GUEST_BOOT_INFO + BI_TSC_KHZ
    cmp SHARED_DISK_WINDOW_WORST, %rax
    jbe 2f
    mov %rax, SHARED_DISK_WINDOW_WORST
2:  cmp ST_DISK_WORST_US(%r14), %rax
    jbe 3f
    mov %rax, ST_DISK_WORST_US(%r14)
3:  clc
    ret

// Prints "DISK CORRUPTION: <%rsi, %ecx bytes> (block N)" and stops the workload; sets CF.
disk_fail:
    incq ST_DISK_ERRORS(%r14)
    movq $2, SHARED_DISK_STATE
    mov $SHARED_OUT_BUF, %rdi
    push %rsi
    push %rcx
    lea msg_disk_corruption(%rip), %rsi
    mov $msg_disk_corruption_len, %ecx
    rep movsb
    pop %rcx
    pop %rsi
    rep movsb
    lea msg_disk_block(%rip), %rsi
    mov $msg_disk_block_len, %ecx
    rep movsb
    mov SHARED_DISK_SEQ, %rax
    call put_decimal
    movw $0x0a29, (%rdi)         // ")\n"
    add $2, %rdi
    call flush_out
    stc
    ret

#include "builtin_guest_net.inc"

// ---- other vCPUs: wait for the fill, then count the ticks vCPU 0 announces.
ap_main:
1:  pause
    cmpq $0, SHARED_FILL_DONE
    je 1b
    xor %r8d, %r8d
    cmpq $0, GUEST_BOOT_INFO + BI_MODE
    jne ap_loop
    call enable_lapic
    sti
ap_loop:
    incq ST_HEARTBEAT(%r14)
    mov GUEST_STATUS + ST_TICKS, %rax
    cmp %rax, %r8
    je 1f
    mov %rax, %r8
    incq ST_TICKS(%r14)
1:  cmpq $0, GUEST_BOOT_INFO + BI_MODE
    jne 2f
    hlt                          // -> #GP -> sleeps until vCPU 0's IPI
    jmp ap_loop
2:  pause
    jmp ap_loop

msg_ready: .ascii "cprvmm built-in guest: memory filled, ticking\n"
    .set msg_ready_len, . - msg_ready
msg_tick: .ascii "tick "
    .set msg_tick_len, . - msg_tick
msg_passes: .ascii " passes "
    .set msg_passes_len, . - msg_passes
msg_corruptions: .ascii " corruptions "
    .set msg_corruptions_len, . - msg_corruptions
msg_cpu1: .ascii " cpu1-ticks "
    .set msg_cpu1_len, . - msg_cpu1
msg_dirty_pages: .ascii " dirty-pages "
    .set msg_dirty_pages_len, . - msg_dirty_pages
msg_corrupt: .ascii "MEMORY CORRUPTION at "
    .set msg_corrupt_len, . - msg_corrupt
msg_expected: .ascii " (expected "
    .set msg_expected_len, . - msg_expected
msg_found: .ascii ", found "
    .set msg_found_len, . - msg_found
msg_echo: .ascii "echo: "
    .set msg_echo_len, . - msg_echo
msg_disk_ops: .ascii " disk-ops "
    .set msg_disk_ops_len, . - msg_disk_ops
msg_disk_worst: .ascii " disk-worst-us "
    .set msg_disk_worst_len, . - msg_disk_worst
msg_disk_ready: .ascii "disk: virtio-blk ready\n"
    .set msg_disk_ready_len, . - msg_disk_ready
msg_disk_refused: .ascii "disk: the virtio-blk device refused the driver; no disk workload\n"
    .set msg_disk_refused_len, . - msg_disk_refused
msg_disk_read_only: .ascii "disk: read-only; no disk workload\n"
    .set msg_disk_read_only_len, . - msg_disk_read_only
msg_disk_corruption: .ascii "DISK CORRUPTION: "
    .set msg_disk_corruption_len, . - msg_disk_corruption
msg_disk_block: .ascii " (block "
    .set msg_disk_block_len, . - msg_disk_block
msg_disk_data: .ascii "the block read back differs from what was written"
    .set msg_disk_data_len, . - msg_disk_data
msg_disk_lost: .ascii "a request got no completion in 10 s (lost)"
    .set msg_disk_lost_len, . - msg_disk_lost
msg_disk_repeated: .ascii "more than one completion for one request (repeated)"
    .set msg_disk_repeated_len, . - msg_disk_repeated
msg_disk_unknown: .ascii "a completion names a request that was not made"
    .set msg_disk_unknown_len, . - msg_disk_unknown
msg_disk_status: .ascii "the device failed a request"
    .set msg_disk_status_len, . - msg_disk_status
msg_net_ready: .ascii "net: virtio-net ready, answering ARP, ICMP echo and UDP echo (port 7) at "
    .set msg_net_ready_len, . - msg_net_ready
msg_net_refused: .ascii "net: the virtio-net device refused the driver; no network responder\n"
    .set msg_net_refused_len, . - msg_net_refused
msg_net_malformed: .ascii "net: malformed frame of "
    .set msg_net_malformed_len, . - msg_net_malformed
msg_net_bytes: .ascii " bytes\n"
    .set msg_net_bytes_len, . - msg_net_bytes
msg_net_link_down: .ascii "net: link down\n"
    .set msg_net_link_down_len, . - msg_net_link_down
msg_net_link_up: .ascii "net: link up\n"
    .set msg_net_link_up_len, . - msg_net_link_up
msg_net_in: .ascii " net-in "
    .set msg_net_in_len, . - msg_net_in
msg_net_out: .ascii " net-out "
    .set msg_net_out_len, . - msg_net_out

cprvmm_builtin_guest_end:
    .section .note.GNU-stack, "", @progbits
