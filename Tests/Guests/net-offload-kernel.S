// A -kernel guest that drives the virtio-net NIC at PCI 00:02.0 the way Linux does, with what
// the built-in guest leaves out: MRG_RXBUF (64 buffers of 2 KiB, num_buffers in every header),
// CSUM and GUEST_CSUM (frames with a partial checksum, VIRTIO_NET_HDR_F_NEEDS_CSUM, in both
// directions) and GUEST_TSO4/HOST_TSO4 (frames up to 64 KiB; with less than 96 MiB of RAM it
// posts only 16 buffers, less room than that). It
// reflects every UDP datagram to its sender, header and all: addresses and ports swapped in
// place, the virtio-net header untouched, so a partial checksum goes back partial and the tap
// must complete it. On COM1 it prints "R" once ready, "C" the first time a frame arrives with
// NEEDS_CSUM, "M" for a frame that took more than one buffer, "." every 64 datagrams
// reflected, and "X" if the device refused the features. Runs at CPL0 (emulated on kvm_pvm:
// slow, but it is a test).
    .code64
    .text
    .globl _start
#define BAR4 0xe0000000
#define BAR1 0xe0010000
#define RX_DESC 0x800000
#define RX_AVAIL 0x801000
#define RX_USED 0x802000
#define TX_DESC 0x810000
#define TX_AVAIL 0x811000
#define TX_USED 0x812000
#define RX_BUFS 0x900000
#define QSIZE 64
#define BUFSIZE 2048
_start:
    mov $BAR4, %r9d
    mov $0x20, %ebx; mov $BAR4, %eax; call pci_write      // BAR4 low
    mov $0x24, %ebx; xor %eax, %eax; call pci_write       // BAR4 high
    mov $0x14, %ebx; mov $BAR1, %eax; call pci_write      // BAR1
    mov $0x04, %ebx; mov $0x6, %eax; call pci_write       // memory + bus master
    movb $0, 0x14(%r9)
    movb $1, 0x14(%r9)
    movb $3, 0x14(%r9)
    movl $1, 0x08(%r9)
    movl $1, 0x0c(%r9)                   // VERSION_1
    movl $0, 0x08(%r9)
    movl $0x88a3, 0x0c(%r9)              // CSUM, GUEST_CSUM, MAC, GUEST_TSO4, HOST_TSO4, MRG_RXBUF
    movb $0x0b, 0x14(%r9)
    testb $8, 0x14(%r9)
    jz refused
    mov 0x2000(%r9), %eax                // our MAC
    mov %eax, mac
    movzwl 0x2004(%r9), %eax
    mov %ax, mac + 4
    movw $0xffff, 0x10(%r9)
    movw $0, 0x16(%r9)                   // queue 0: receive
    movw $QSIZE, 0x18(%r9)
    movw $0xffff, 0x1a(%r9)
    movl $RX_DESC, 0x20(%r9); movl $0, 0x24(%r9)
    movl $RX_AVAIL, 0x28(%r9); movl $0, 0x2c(%r9)
    movl $RX_USED, 0x30(%r9); movl $0, 0x34(%r9)
    movw $1, 0x1c(%r9)
    movw $1, 0x16(%r9)                   // queue 1: transmit
    movw $QSIZE, 0x18(%r9)
    movw $0xffff, 0x1a(%r9)
    movl $TX_DESC, 0x20(%r9); movl $0, 0x24(%r9)
    movl $TX_AVAIL, 0x28(%r9); movl $0, 0x2c(%r9)
    movl $TX_USED, 0x30(%r9); movl $0, 0x34(%r9)
    movw $1, 0x1c(%r9)
    // 64 receive buffers (128 KiB: room for a 64 KiB frame) with 96 MiB of RAM or more, else
    // 16 (32 KiB: less than the largest frame TSO4 allows, so the device must take frames in
    // as they come instead of waiting for room it will never get).
    mov $QSIZE, %r8d
    cmpq $(96 << 20), 0x500 + 48         // boot info: the end of the first RAM range
    jae 2f
    mov $16, %r8d
2:  xor %ecx, %ecx                       // receive buffer i in descriptor i, device-writable
1:  mov %ecx, %eax
    shl $11, %eax
    add $RX_BUFS, %eax
    mov %ecx, %edx
    shl $4, %edx
    mov %rax, RX_DESC(%rdx)
    movl $BUFSIZE, RX_DESC + 8(%rdx)
    movl $2, RX_DESC + 12(%rdx)
    movw %cx, RX_AVAIL + 4(, %rcx, 2)
    inc %ecx
    cmp %r8d, %ecx
    jb 1b
    movw $1, RX_AVAIL                    // no interrupts: polled
    mov %r8w, RX_AVAIL + 2
    movw $1, TX_AVAIL
    movb $0x0f, 0x14(%r9)                // DRIVER_OK
    movw $0, 0x3000(%r9)
    mov $'R', %al
    call putc
    xor %r12d, %r12d                     // receive completions taken
    mov %r8d, %r13d                      // receive buffers made available
    xor %r14d, %r14d                     // frames transmitted
    xor %r15d, %r15d                     // 1 once "C" was printed
poll:
    movzwl RX_USED + 2, %eax
    cmp %r12w, %ax
    je poll
    mov %r12d, %ecx
    and $(QSIZE - 1), %ecx
    mov RX_USED + 4(, %rcx, 8), %r10d    // the buffer
    mov RX_USED + 8(, %rcx, 8), %r11d    // bytes
    inc %r12d
    mov %r10d, %esi
    shl $11, %esi
    add $RX_BUFS, %esi                   // the header, then the frame
    cmpw $1, 10(%rsi)                    // num_buffers
    je 2f
    mov $'M', %al
    call putc
    jmp repost
2:  test %r15d, %r15d
    jnz 3f
    testb $1, (%rsi)                     // VIRTIO_NET_HDR_F_NEEDS_CSUM
    jz 3f
    mov $1, %r15d
    mov $'C', %al
    call putc
3:  cmpw $0x0008, 24(%rsi)               // IPv4 (EtherType at 12 + 12)
    jne repost
    cmpb $17, 35(%rsi)                   // UDP (protocol at 12 + 23)
    jne repost
    mov 18(%rsi), %eax                   // Ethernet: to the sender, from us
    mov %eax, 12(%rsi)
    movzwl 22(%rsi), %eax
    mov %ax, 16(%rsi)
    mov mac, %eax
    mov %eax, 18(%rsi)
    movzwl mac + 4, %eax
    mov %ax, 22(%rsi)
    mov 38(%rsi), %eax                   // IP addresses swapped (12 + 26, 12 + 30)
    mov 42(%rsi), %edx
    mov %edx, 38(%rsi)
    mov %eax, 42(%rsi)
    movzwl 46(%rsi), %eax                // UDP ports swapped (12 + 34, 12 + 36)
    movzwl 48(%rsi), %edx
    mov %dx, 46(%rsi)
    mov %ax, 48(%rsi)
    movw $0, 10(%rsi)                    // num_buffers means nothing on transmit
    mov %r14d, %ecx                      // header and frame out as they are
    and $(QSIZE - 1), %ecx
    mov %ecx, %edx
    shl $4, %edx
    mov %rsi, TX_DESC(%rdx)
    mov %r11d, TX_DESC + 8(%rdx)
    movl $0, TX_DESC + 12(%rdx)
    movw %cx, TX_AVAIL + 4(, %rcx, 2)
    inc %r14d
    mov %r14w, TX_AVAIL + 2
    movw $1, 0x3004(%r9)
4:  cmpw %r14w, TX_USED + 2              // wait until it is sent: the buffer is reused
    jne 4b
    test $63, %r14d
    jnz repost
    mov $'.', %al
    call putc
repost:
    mov %r13d, %ecx
    and $(QSIZE - 1), %ecx
    movw %r10w, RX_AVAIL + 4(, %rcx, 2)
    inc %r13d
    mov %r13w, RX_AVAIL + 2
    movw $0, 0x3000(%r9)
    jmp poll

refused:
    mov $'X', %al
    call putc
1:  hlt
    jmp 1b

putc:
    mov $0x3f8, %dx
    out %al, %dx
    ret

// Config mechanism #1: register %ebx of 00:02.0 := %eax.
pci_write:
    push %rax
    mov $0x80001000, %eax
    or %ebx, %eax
    mov $0xcf8, %dx
    out %eax, %dx
    pop %rax
    mov $0xcfc, %dx
    out %eax, %dx
    ret

    .data
mac: .quad 0
    .section .note.GNU-stack, "", @progbits
