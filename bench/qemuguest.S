// qemuguest.S: the guest bench/live-migration runs under QEMU, a flat 64 KiB firmware image for
// `qemu-system-x86_64 -bios qemuguest.bin` (no SeaBIOS: it would take 5-10 s to boot here).
//
// Meant to be comparable with cprvmm's `-builtin-guest mode=spin,fill=50[,dirty=PCT]`
// (docs/guest.md) as a host sees it through guest RAM:
//   - a heartbeat u64 at guest-physical 0x5000, advanced on every pass of its main loop with no
//     exit (the address of the built-in guest's vCPU 0 status record);
//   - optionally the dirtying workload of the built-in guest's `dirty=`: pages of a dirty area
//     rewritten at a fixed rate, in sweeps; sweep n (from 1) checks that the page's first u64
//     holds n - 1 and stores n. Pages written are counted at 0x60e8, sweeps at 0x60f0 and
//     mismatches (a page a migration lost or corrupted) at 0x5018 — the built-in guest's
//     addresses, so one sampler reads both guests;
//   - the fill pattern is not its work: the host writes it into the RAM file before QEMU starts
//     (bench/livemig.c fill), where the built-in guest would have written it.
// Like the built-in guest, it does its work in 64-bit mode at CPL 3, which runs natively on
// this project's hosts (kvm_pvm), while CPL 0 code runs in KVM's instruction emulator (about 1M
// instructions/s; a CPL 0 loop here reaches about 60k checked pages/s, short of 10 % of 4 GiB
// per second). Its CPL 0 part is the start-up only: real mode -> 32-bit protected mode ->
// GDT, TSS and identity-mapped page tables (2 MiB pages, user-accessible, the first 8 GiB) in
// RAM -> long mode -> iretq to CPL 3 with interrupts off. No IDT: nothing may fault.
//
// Parameters, written by the host into guest RAM before QEMU starts, at 0x6100 (u64 each):
//   +0 magic "LMGUEST2", +8 dirty area start, +16 dirty area end (4 KiB aligned),
//   +24 TSC cycles per page (0: no dirtying), +32 the longest backlog kept, in TSC cycles.
// The rate is paced by the TSC: the next page is due at a deadline that advances by the
// interval per page written. A guest behind by more than the backlog limit (100 ms from
// bench/livemig.c: a long pause, such as the migration's downtime) drops all of it and goes on
// from now, as the built-in guest catches up at most 100 ticks (ms) of its dirty= work and
// skips the rest.
//
// Layout in RAM (all below 0x800000, where the fill starts): 0x1000 GDT, 0x2000 TSS,
// 0x5000 status record, 0x6000 variables and parameters, 0x7000 stacks, 0x10000 page tables.
//
// Build: clang -target x86_64-unknown-none -c qemuguest.S -o qemuguest.o
//        ld.lld --image-base=0 -Ttext=0 --oformat binary qemuguest.o -o qemuguest.bin  (65536 bytes)
// QEMU maps the image below 4 GiB and its 64 KiB also at 0xf0000; the CPU starts in real mode
// at f000:fff0. Segment descriptors that live in ROM are marked accessed already: loading one
// that is not makes KVM's emulator write the accessed bit into ROM, and the vCPU hangs there.

#define HEARTBEAT 0x5000
#define CORRUPTIONS 0x5018
#define DIRTY_PAGES 0x60e8
#define DIRTY_SWEEPS 0x60f0
#define PARAMS 0x6100
#define MAGIC 0x3254534555474d4c   // "LMGUEST2"
#define GDT 0x1000
#define TSS 0x2000
#define KERNEL_STACK 0x7800
#define USER_STACK 0x8000
#define PML4 0x10000
#define PDPT 0x11000
#define PD 0x12000                 // 8 page directories: 8 GiB
#define IMAGE_BASE 0xf0000         // where the real-mode code runs (the image's alias below 1 MiB)

    .text
    .code16
start16:
    cli
    cld
    lgdtl %cs:rom_gdt_descriptor
    mov %cr0, %eax
    and $~0x60000000, %eax         // caches on (CD, NW clear), as SeaBIOS does
    or $1, %eax                    // PE
    mov %eax, %cr0
    ljmpl $0x08, $(IMAGE_BASE + start32)

    .code32
start32:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    mov $KERNEL_STACK, %esp
    xor %eax, %eax
    mov %eax, HEARTBEAT
    mov %eax, HEARTBEAT + 4
    mov %eax, CORRUPTIONS
    mov %eax, CORRUPTIONS + 4
    mov %eax, DIRTY_PAGES
    mov %eax, DIRTY_PAGES + 4
    mov %eax, DIRTY_SWEEPS
    mov %eax, DIRTY_SWEEPS + 4

    // The long-mode GDT, in RAM (ltr sets the busy bit in the TSS descriptor).
    movl $0, GDT
    movl $0, GDT + 4
    movl $0x0000ffff, GDT + 0x08   // 0x08 kernel code: 64-bit, DPL 0
    movl $0x00af9b00, GDT + 0x0c
    movl $0x0000ffff, GDT + 0x10   // 0x10 kernel data
    movl $0x00cf9300, GDT + 0x14
    movl $0x0000ffff, GDT + 0x18   // 0x1b user code: 64-bit, DPL 3
    movl $0x00affb00, GDT + 0x1c
    movl $0x0000ffff, GDT + 0x20   // 0x23 user data, DPL 3
    movl $0x00cff300, GDT + 0x24
    movl $((TSS << 16) | 103), GDT + 0x28   // 0x28 TSS: 64-bit, available, base TSS, limit 103
    movl $(0x00008900 | (TSS >> 16)), GDT + 0x2c
    movl $0, GDT + 0x30
    movl $0, GDT + 0x34

    // The TSS: RSP0 (unused: nothing faults) and no I/O bitmap.
    mov $TSS, %edi
    mov $26, %ecx
1:  movl $0, (%edi)
    add $4, %edi
    dec %ecx
    jnz 1b
    movl $KERNEL_STACK, TSS + 4
    movw $104, TSS + 102

    // Page tables: PML4[0] -> PDPT; PDPT[g] -> PD g; PD entries: 2 MiB pages. P|RW|US (+PS).
    mov $PML4, %edi
    mov $2048, %ecx                // PML4 and PDPT: zero them
1:  movl $0, (%edi)
    add $4, %edi
    dec %ecx
    jnz 1b
    movl $(PDPT | 7), PML4
    mov $PDPT, %edi
    mov $(PD | 7), %eax
    mov $8, %ecx
1:  mov %eax, (%edi)
    add $8, %edi
    add $0x1000, %eax
    dec %ecx
    jnz 1b
    mov $PD, %edi
    mov $0x87, %eax                // physical address low dword | P|RW|US|PS
    xor %edx, %edx                 // high dword
    mov $(8 * 512), %ecx
1:  mov %eax, (%edi)
    mov %edx, 4(%edi)
    add $8, %edi
    add $0x200000, %eax
    adc $0, %edx
    dec %ecx
    jnz 1b

    // Long mode: PAE, CR3, EFER.LME, PG; then the 64-bit code segment of the new GDT.
    mov $0x20, %eax
    mov %eax, %cr4
    mov $PML4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    lgdtl IMAGE_BASE + ram_gdt_descriptor
    mov %cr0, %eax
    or $0x80010000, %eax           // PG, WP
    mov %eax, %cr0
    ljmpl $0x08, $(IMAGE_BASE + start64)

    .code64
start64:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov $0x28, %eax
    ltr %ax
    mov $KERNEL_STACK, %esp
    pushq $0x23                    // SS
    pushq $USER_STACK              // RSP
    pushq $0x2                     // RFLAGS: interrupts off
    pushq $0x1b                    // CS
    pushq $(IMAGE_BASE + user)     // RIP
    iretq

// CPL 3 from here on.
user:
    mov $0x23, %eax
    mov %eax, %ds
    mov %eax, %es
    movabs $MAGIC, %rax
    cmp %rax, PARAMS
    jne idle
    mov PARAMS + 24, %r10          // TSC cycles per page
    test %r10, %r10
    jz idle
    mov PARAMS + 8, %r8            // the area
    mov PARAMS + 16, %r9
    mov PARAMS + 32, %r11          // the longest backlog kept
    mov %r8, %rsi                  // cursor
    xor %ebx, %ebx                 // sweeps completed = n - 1
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %rcx                 // the first page is due now

// The dirtying loop: a heartbeat per pass; a page whenever the TSC has reached the deadline.
dirty:
    addq $1, HEARTBEAT
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    sub %rcx, %rdx                 // now - deadline
    js dirty
    cmp %r11, %rdx
    jbe 1f
    add %rdx, %rcx                 // behind by more than the backlog: start again from now
1:  mov (%rsi), %rax
    cmp %rbx, %rax
    jne mismatch
store:
    lea 1(%rbx), %rax
    mov %rax, (%rsi)
    addq $1, DIRTY_PAGES
    add $4096, %rsi
    cmp %r9, %rsi
    jb 2f
    mov %r8, %rsi                  // the next sweep starts at the area's first page
    inc %rbx
    mov %rbx, DIRTY_SWEEPS
2:  add %r10, %rcx
    jmp dirty
mismatch:
    addq $1, CORRUPTIONS
    jmp store

// No dirtying: only the heartbeat.
idle:
    addq $1, HEARTBEAT
    jmp idle

    .balign 8
rom_gdt:                           // for the 32-bit step only
    .quad 0
    .quad 0x00cf9b000000ffff       // 0x08: code, flat 4 GiB, 32-bit (accessed already: ROM)
    .quad 0x00cf93000000ffff       // 0x10: data, flat 4 GiB (accessed)
rom_gdt_end:
rom_gdt_descriptor:
    .word rom_gdt_end - rom_gdt - 1
    .long IMAGE_BASE + rom_gdt
ram_gdt_descriptor:
    .word 0x37
    .long GDT

    .org 0xfff0
    .code16
reset:
    ljmp $0xf000, $start16
    .org 0x10000
