// A -kernel guest that faults with no interrupt table: #UD -> #DF -> triple fault.
// cprvmm must report it with the registers and exit non-zero.
    .code64
    .text
    .globl _start
_start:
    mov $0x1234, %rax
    ud2
    .section .note.GNU-stack, "", @progbits
