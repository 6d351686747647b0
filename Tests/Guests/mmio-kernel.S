// A -kernel guest that touches guest-physical addresses where no device and no RAM is: the
// PCI hole (0xe0000000), the HPET's usual place (0xfed00000) and just above its 64 MiB of RAM
// (0x4000000), with reads of 1, 4 and 8 bytes and writes. Real hardware answers such reads
// with all ones and drops the writes; the guest prints "mmio ok" when every read came back as
// all ones, "mmio bad" otherwise, and ends the VM through isa-debug-exit with 0x21.
// Runs at CPL0, in KVM's instruction emulator on kvm_pvm hosts: keep it short.
    .code64
    .text
    .globl _start
_start:
    xor %r8d, %r8d                  // count of reads that were not all ones
    mov $0xe0000000, %eax
    movl $0x12345678, (%rax)
    mov (%rax), %ebx
    cmp $0xffffffff, %ebx
    je 1f
    inc %r8
1:  mov $0xfed00000, %eax
    movq $-2, (%rax)
    mov (%rax), %rbx
    cmp $-1, %rbx
    je 2f
    inc %r8
2:  mov $0x4000000, %eax
    movb $0, (%rax)
    movzbl (%rax), %ebx
    cmp $0xff, %ebx
    je 3f
    inc %r8
3:  lea ok(%rip), %rsi
    mov $ok_length, %ecx
    test %r8, %r8
    jz 4f
    lea bad(%rip), %rsi
    mov $bad_length, %ecx
4:  mov $0x3f8, %dx
    rep outsb
    mov $0x21, %al
    mov $0x501, %dx
    out %al, %dx
5:  cli
    hlt
    jmp 5b

ok: .ascii "mmio ok\n"
    .set ok_length, . - ok
bad: .ascii "mmio bad\n"
    .set bad_length, . - bad
    .section .note.GNU-stack, "", @progbits
