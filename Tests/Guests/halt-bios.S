// A 64 KiB firmware image that halts with interrupts disabled: nothing can wake it,
// so cprvmm must stop the VM with a message instead of hanging.
    .code16
    .text
start:
    cli
    hlt
    jmp start

    .org 0xfff0
reset_vector:
    // jmp start: a near jump whose 16-bit displacement wraps IP from 0xfff3 around to 0
    .byte 0xe9
    .word start - (. + 2) + 0x10000
    .org 0x10000
