// A 64 KiB real-mode firmware image for -bios: starts at the reset vector (F000:FFF0),
// prints a line on COM1 and ends the VM through the debug-exit port with value 0x10
// (exit status 33). Data is read through DS = 0xF000, which works because cprvmm aliases
// the image's last 128 KiB below 1 MiB, as a PC does.
    .code16
    .text
start:
    cli
    mov $0xf000, %ax
    mov %ax, %ds
    mov $message, %si
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  mov $0x10, %al
    mov $0x501, %dx
    out %al, %dx
3:  hlt
    jmp 3b
message: .asciz "hello from the -bios firmware\n"

    .org 0xfff0
reset_vector:
    // jmp start: a near jump whose 16-bit displacement wraps IP from 0xfff3 around to 0
    .byte 0xe9
    .word start - (. + 2) + 0x10000
    .org 0x10000
