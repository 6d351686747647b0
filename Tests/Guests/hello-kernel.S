// A minimal -kernel guest: checks the boot-info magic cprvmm passes in RDI, prints a line
// with the vCPU index from RSI, and ends the VM through the debug-exit port with value 0x21
// (cprvmm then exits with status (0x21 << 1) | 1 = 67). Runs at CPL0: keep it short.
    .code64
    .text
    .globl _start
_start:
    movabs $0x49424d4d56525043, %rax      // "CPRVMMBI"
    cmp (%rdi), %rax
    jne bad_boot_info
    lea message(%rip), %rsi
    mov $message_length, %ecx
    mov $0x3f8, %dx
    rep outsb
    mov $0x21, %al
    mov $0x501, %dx
    out %al, %dx
1:  cli
    hlt
    jmp 1b
bad_boot_info:
    mov $0x7f, %al
    mov $0x501, %dx
    out %al, %dx
    jmp 1b

message: .ascii "hello from the -kernel guest\n"
    .set message_length, . - message
    .section .note.GNU-stack, "", @progbits
