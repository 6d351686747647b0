// A -kernel guest that keeps reporting what CPUID tells it: every few tens of milliseconds it
// prints "avx=1" or "avx=0" (CPUID leaf 1, ECX bit 28) on COM1. The migration tests change
// the CPUID a saved state carries and check that the guest sees the saved CPU, not the host's.
// Runs at CPL0, in KVM's instruction emulator on kvm_pvm hosts: keep it short.
    .code64
    .text
    .globl _start
_start:
1:  mov $1, %eax
    xor %ecx, %ecx
    cpuid
    mov $'0', %al
    bt $28, %ecx
    jnc 2f
    mov $'1', %al
2:  mov %al, digit(%rip)
    lea line(%rip), %rsi
    mov $line_length, %ecx
    mov $0x3f8, %dx
    rep outsb
    mov $20000, %ecx
3:  dec %ecx
    jnz 3b
    jmp 1b

    .data
line: .ascii "avx="
digit: .ascii "?\n"
    .set line_length, . - line
    .section .note.GNU-stack, "", @progbits
