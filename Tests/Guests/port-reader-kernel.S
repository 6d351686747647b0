// A -kernel guest for the vCPU bridge tests: forever, it reads port 0x278 (LPT2; no device there:
// cprvmm answers 0xff, but only an image can, so a vCPU bridge must stop at it and leave it to
// the next image) and prints '.' when it read 0xff, 'X' otherwise, then waits about 1 ms.
// Runs at CPL0, in KVM's instruction emulator on kvm_pvm hosts: keep it short.
    .code64
    .text
    .globl _start
_start:
    mov $0x3f8, %dx
1:  mov $0x278, %dx
    in %dx, %al
    mov %al, %bl
    mov $'.', %al
    cmp $0xff, %bl
    je 2f
    mov $'X', %al
2:  mov $0x3f8, %dx
    out %al, %dx
    mov $300, %ecx
3:  dec %ecx
    jnz 3b
    jmp 1b
    .section .note.GNU-stack, "", @progbits
