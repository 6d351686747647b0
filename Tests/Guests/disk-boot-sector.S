// A boot sector for SeaBIOS on a virtio-blk disk (FirmwareTests). SeaBIOS loads it at
// 0000:7C00; through the BIOS disk services (int 13h, extended read/write) it then, in each
// of PASSES passes:
//   - reads sectors 1-16 and checks that sector k holds 512 bytes of value k,
//   - writes sector 64 + (pass mod 16) full of (pass ^ 0x5a) and reads it back,
// and prints "pass NNNN ok" (hex) on COM1, or "BAD ..." and stops. After the last pass it
// ends the VM through isa-debug-exit (exit status 33). The host checks sectors 64-79 after.
    .code16
    .set PASSES, 0x30
    .text
    .globl _start
_start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7c00, %sp
    sti
    mov %dl, drive
    mov $hello, %si
    call print

pass:
    // Sectors 1-16 into 1000:0000.
    movw $16, dap_count
    movw $0x1000, dap_segment
    movw $1, dap_lba
    mov $0x42, %ah
    call disk
    mov $0x1000, %ax
    mov %ax, %es
    xor %di, %di
    mov $1, %bl
1:  mov $512, %cx
2:  cmpb %bl, %es:(%di)
    jne bad_data
    inc %di
    loop 2b
    inc %bl
    cmp $17, %bl
    jne 1b

    // Fill 2000:0000 with the pass's byte and write it to sector 64 + (pass mod 16).
    mov $0x2000, %ax
    mov %ax, %es
    xor %di, %di
    mov passes, %al
    xor $0x5a, %al
    mov $512, %cx
    cld
    rep stosb
    mov passes, %ax
    and $15, %ax
    add $64, %ax
    mov %ax, dap_lba
    movw $1, dap_count
    movw $0x2000, dap_segment
    mov $0x43, %ah
    call disk
    // Read it back into 3000:0000 and compare.
    movw $1, dap_count
    movw $0x3000, dap_segment
    mov $0x42, %ah
    call disk
    push %ds
    mov $0x2000, %ax
    mov %ax, %ds
    mov $0x3000, %ax
    mov %ax, %es
    xor %si, %si
    xor %di, %di
    mov $512, %cx
    repe cmpsb
    pop %ds
    jne bad_readback

    mov $pass_text, %si
    call print
    mov passes, %ax
    call print_hex
    mov $ok_text, %si
    call print
    incw passes
    cmpw $PASSES, passes
    jne pass
    mov $0x10, %al
    mov $0x501, %dx
    out %al, %dx
3:  hlt
    jmp 3b

// int 13h with AH set (AL = 0) on the DAP; a failure prints the status and stops.
disk:
    mov $0, %al
    mov drive, %dl
    mov $dap, %si
    int $0x13
    jc bad_disk
    xor %ax, %ax
    mov %ax, %es
    ret

bad_disk:
    mov $bad_disk_text, %si
    jmp stop
bad_data:
    mov $bad_data_text, %si
    jmp stop
bad_readback:
    mov $bad_readback_text, %si
stop:
    xor %ax, %ax
    mov %ax, %ds
    call print
4:  hlt
    jmp 4b

// Prints the NUL-terminated string at DS:SI on COM1.
print:
    lodsb
    test %al, %al
    jz 5f
    call putc
    jmp print
5:  ret

// Prints AX as four hex digits.
print_hex:
    mov $4, %cx
6:  rol $4, %ax
    push %ax
    and $15, %al
    add $'0', %al
    cmp $'9', %al
    jbe 7f
    add $('a' - '9' - 1), %al
7:  call putc
    pop %ax
    loop 6b
    ret

putc:
    push %dx
    push %ax
    mov $0x3fd, %dx
8:  in %dx, %al
    test $0x20, %al
    jz 8b
    pop %ax
    mov $0x3f8, %dx
    out %al, %dx
    pop %dx
    ret

hello:              .asciz "boot sector: running from the virtio disk\r\n"
pass_text:          .asciz "pass "
ok_text:            .asciz " ok\r\n"
bad_disk_text:      .asciz "BAD int 13h failed\r\n"
bad_data_text:      .asciz "BAD sector contents\r\n"
bad_readback_text:  .asciz "BAD read back differs from what was written\r\n"
drive:  .byte 0
passes: .word 0
    .balign 4
// Disk address packet for int 13h AH=42h/43h.
dap:            .byte 16, 0
dap_count:      .word 0
dap_offset:     .word 0
dap_segment:    .word 0
dap_lba:        .word 0, 0, 0, 0

    .org 510
    .byte 0x55, 0xaa
