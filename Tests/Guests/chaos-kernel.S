// A -kernel guest that misbehaves on purpose, on every vCPU (at CPL0 on even ones, CPL3 on odd
// ones), forever: random port I/O (any
// port, 1 or 4 bytes, in and out), MMIO reads and writes at random addresses above RAM, in
// the PCI hole and above 4 GiB (unmapped there: page faults), RDMSR/WRMSR of random MSRs and
// CPUID of random leaves. Its own IDT catches the exceptions that follows (#GP for unknown
// MSRs, #PF above the identity map) and skips the instruction (r15 holds its length), so the
// guest keeps going and the VMM keeps getting exits. It leaves alone only what would stop
// the guest itself: the LAPIC and IOAPIC pages (in-kernel devices, not the VMM's), and it
// never enables interrupts. At CPL0 it runs in KVM's instruction emulator on kvm_pvm hosts.
    .code64
    .text
    .globl _start
_start:
    mov %rdi, %r14                  // boot information
    mov %rsi, %r12                  // vCPU index
    // xorshift64 state: seeded with the vCPU index, so each vCPU has its own sequence.
    movabs $0x9E3779B97F4A7C15, %r13
    add %rsi, %r13
    // The IDT: vectors 0-31, interrupt gates to the stubs below (every vCPU writes the same
    // bytes, then loads it).
    lea idt(%rip), %rdi
    lea stubs(%rip), %rsi
    xor %ecx, %ecx
1:  mov %rsi, %rax
    mov %ax, (%rdi)                 // offset 15:0
    movw $0x08, 2(%rdi)             // kernel code selector
    movw $0x8E00, 4(%rdi)           // present, DPL 0, interrupt gate
    shr $16, %rax
    mov %ax, 6(%rdi)                // offset 31:16
    shr $16, %rax
    mov %eax, 8(%rdi)               // offset 63:32
    movl $0, 12(%rdi)
    add $16, %rdi
    add $16, %rsi                   // each stub is 16 bytes
    inc %ecx
    cmp $32, %ecx
    jb 1b
    lidt idtr(%rip)
    // Odd vCPUs misbehave at CPL3, natively rather than in the emulator; even ones at CPL0.
    // Exceptions come back through the IDT on the TSS's RSP0 stack that cprvmm set up. At
    // CPL3 RDMSR/WRMSR give #GP, and so does port I/O on kvm_pvm hosts: the IOPL 3 this
    // IRETQ loads is not honoured there (observed; the built-in guest gets IOPL 3 from
    // KVM_SET_REGS instead), so the CPL3 vCPUs exercise MMIO, CPUID and the fault paths.
    mov %rsp, %rax
    test $1, %r12
    jz chaos
    pushq $0x23                     // user data
    push %rax
    pushq $0x3002                   // IOPL 3, interrupts off
    pushq $0x1b                     // user code
    lea chaos(%rip), %rax
    push %rax
    iretq

chaos:
    call random
    mov %rax, %rbx                  // rbx: the choice and the operands
    and $7, %eax
    cmp $0, %eax
    je port_in
    cmp $1, %eax
    je port_out
    cmp $2, %eax
    je mmio_read
    cmp $3, %eax
    je mmio_write
    cmp $4, %eax
    je msr_read
    cmp $5, %eax
    je msr_write
    jmp cpuid_leaf

port_in:
    call random
    mov %eax, %edx                  // port = low 16 bits
    test $0x10000, %eax
    jnz 2f
    mov $1, %r15d
    in %dx, %al
    jmp chaos
2:  mov $1, %r15d
    in %dx, %eax
    jmp chaos

port_out:
    call random
    mov %eax, %edx
    // Port 0x92 and 0xcf9 reset the machine, which ends this VM (cprvmm has no reset yet):
    // a legitimate request, not a misbehaviour to survive.
    cmp $0x92, %dx
    je chaos
    cmp $0xcf9, %dx
    je chaos
    shr $16, %rax
    test $0x100, %eax
    jnz 2f
    mov $1, %r15d
    out %al, %dx
    jmp chaos
2:  mov $1, %r15d
    out %eax, %dx
    jmp chaos

// An address above RAM: RAM end .. 4 GiB (the PCI hole, firmware, interrupt controllers) or
// up to 1 GiB above 4 GiB + RAM (not mapped: a page fault). In %rax, 8-byte aligned; the
// LAPIC and IOAPIC pages are left alone.
address:
    call random
    mov %rax, %rcx
    mov 48(%r14), %rsi              // base: the end of the first RAM range
    mov $0x100000000, %rdi
    sub %rsi, %rdi                  // size: up to 4 GiB
    bt $63, %rcx
    jnc 3f
    mov $0x100000000, %rsi
    add 48(%r14), %rsi
    mov $0x40000000, %rdi
3:  mov %ecx, %eax
    xor %edx, %edx
    div %rdi
    lea (%rsi, %rdx), %rax
    and $-8, %rax
    mov %rax, %rcx
    shr $12, %rcx
    cmp $0xFEC00, %rcx
    je address
    cmp $0xFEE00, %rcx
    je address
    ret

mmio_read:
    call address
    mov $3, %r15d
    mov (%rax), %rbx                // 48 8b 18
    jmp chaos

mmio_write:
    call address
    mov %rax, %rdi
    call random
    xchg %rax, %rdi
    mov $3, %r15d
    mov %rdi, (%rax)                // 48 89 38
    jmp chaos

msr_read:
    call random
    mov %eax, %ecx
    bt $32, %rax
    jnc 2f
    and $0x1FFF, %ecx               // half of them among the architectural MSRs
2:  mov $2, %r15d
    rdmsr
    jmp chaos

msr_write:
    call random
    mov %eax, %ecx
    or $0x40000000, %ecx            // not an architectural MSR the guest needs (EFER, ...)
    mov %rax, %rdx
    shr $32, %rdx
    mov $2, %r15d
    wrmsr
    jmp chaos

cpuid_leaf:
    call random
    mov %eax, %ecx
    shr $32, %rax
    mov $2, %r15d
    cpuid
    jmp chaos

// xorshift64 in %r13; returns the next value in %rax.
random:
    mov %r13, %rax
    shl $13, %rax
    xor %rax, %r13
    mov %r13, %rax
    shr $7, %rax
    xor %rax, %r13
    mov %r13, %rax
    shl $17, %rax
    xor %rax, %r13
    mov %r13, %rax
    ret

// 32 stubs of 16 bytes: those of exceptions that push an error code drop it, then all skip
// the faulting instruction (r15 bytes) and return to the next one.
    .balign 16
stubs:
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .balign 16
    .if \vector == 8 || \vector == 10 || \vector == 11 || \vector == 12 || \vector == 13 || \vector == 14 || \vector == 17 || \vector == 21 || \vector == 29 || \vector == 30
    add $8, %rsp
    .endif
    jmp skip
    .endr
skip:
    add %r15, (%rsp)
    iretq

    .data
    .balign 16
idtr:
    .word 32 * 16 - 1
    .quad idt
    .balign 16
idt:
    .space 32 * 16
    .section .note.GNU-stack, "", @progbits
