// A -kernel guest that attacks the virtio-blk disk at PCI 00:02.0, forever. It places the
// disk's BARs (BAR4 at 0xe0000000, BAR1 at 0xe0010000) and enables them, then at random:
// writes any value to any register of the common configuration, ISR, device configuration,
// notify area and MSI-X table; enables the queue with rings anywhere (in RAM, misaligned,
// beyond RAM); fills the ring area in RAM with random descriptors and available entries;
// kicks; resets the device; writes random PCI config registers of the disk (and puts the
// BARs back every 256 rounds). Every 4096 rounds it prints '.' on COM1. Whatever it does,
// only its own disk may stop working: cprvmm must keep serving the VM, the monitor and
// live updates. Runs at CPL0, in KVM's instruction emulator on kvm_pvm hosts.
    .code64
    .text
    .globl _start
#define BAR4 0xe0000000
#define BAR1 0xe0010000
#define RINGS 0x800000
_start:
    movabs $0x2545F4914F6CDD1D, %r13      // xorshift64 state
    xor %r12d, %r12d                      // round
    mov $BAR4, %r9d                       // BAR bases in registers: above 2 GiB, an absolute
    mov $BAR1, %r10d                      // address would be sign-extended
place:
    mov $0x20, %ebx; mov $BAR4, %eax; call pci_write      // BAR4 low
    mov $0x24, %ebx; xor %eax, %eax; call pci_write       // BAR4 high
    mov $0x14, %ebx; mov $BAR1, %eax; call pci_write      // BAR1
    mov $0x04, %ebx; mov $0x6, %eax; call pci_write       // memory + bus master
round:
    inc %r12
    test $0xfff, %r12
    jnz 1f
    mov $'.', %al
    mov $0x3f8, %dx
    out %al, %dx
1:  test $0xff, %r12
    jz place
    call random
    mov %rax, %r8                          // operands
    shr $56, %rax
    and $7, %eax
    cmp $0, %eax; je common_write
    cmp $1, %eax; je any_write
    cmp $2, %eax; je msix_write
    cmp $3, %eax; je setup_queue
    cmp $4, %eax; je garbage_rings
    cmp $5, %eax; je kick
    cmp $6, %eax; je any_read
    jmp config_write

// A random dword of common configuration (0x00-0x3c) gets a random value; sometimes a byte.
common_write:
    mov %r8, %rcx
    and $0x3c, %ecx
    call random
    test $1, %r8
    jz 1f
    mov %eax, (%r9,%rcx)
    jmp round
1:  mov %al, 0x14(%r9)                   // device_status: reset, DRIVER_OK, anything
    jmp round

// Anywhere in BAR4 (ISR, device configuration, notify, beyond): 1, 2 or 4 bytes.
any_write:
    mov %r8, %rcx
    and $0x3ffc, %ecx
    call random
    mov %eax, (%r9,%rcx)
    movw %ax, 0x3000(%r9)
    movb %al, 0x2000(%r9,%rcx)
    jmp round

any_read:
    mov %r8, %rcx
    and $0x3ffc, %ecx
    mov (%r9,%rcx), %eax
    movzbl 0x1000(%r9), %eax             // the ISR (reading clears it)
    jmp round

// The MSI-X table and PBA: any offset, any value.
msix_write:
    mov %r8, %rcx
    and $0xffc, %ecx
    call random
    mov %eax, (%r10,%rcx)
    jmp round

// The queue set up to run: rings in the ring area (or, one time in four, anywhere), enabled,
// DRIVER_OK set.
setup_queue:
    movb $0, 0x14(%r9)
    movb $0x0b, 0x14(%r9)
    movl $0, 0x08(%r9)
    movl $0x200, 0x0c(%r9)
    movl $1, 0x08(%r9)
    movl $1, 0x0c(%r9)
    movb $0x0b, 0x14(%r9)
    movw $0, 0x16(%r9)
    mov %r8, %rax
    and $0x7, %eax
    mov $1, %edx
    mov %eax, %ecx
    shl %cl, %edx                          // queue size 1..128
    mov %dx, 0x18(%r9)
    movl $RINGS, 0x20(%r9)
    movl $(RINGS + 0x1000), 0x28(%r9)
    movl $(RINGS + 0x2000), 0x30(%r9)
    test $0x300, %r8
    jnz 1f
    call random
    mov %eax, 0x28(%r9)                  // the available ring anywhere below 4 GiB
1:  movw $1, 0x1c(%r9)
    movb $0x0f, 0x14(%r9)
    jmp round

// 64 random quadwords into the descriptor table and available ring, then a kick.
garbage_rings:
    mov $64, %ecx
1:  push %rcx
    call random
    mov %rax, %rdx
    call random
    and $0x1ff8, %eax
    mov %rdx, RINGS(%rax)
    pop %rcx
    loop 1b
    // now and then a believable available index
    test $3, %r8
    jnz kick
    mov %r8, %rax
    shr $8, %rax
    mov %ax, RINGS + 0x1002
kick:
    movw $0, 0x3000(%r9)
    jmp round

// A random register of the disk's PCI config space gets a random value.
config_write:
    mov %r8, %rbx
    and $0xfc, %ebx
    call random
    call pci_write
    jmp round

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

// xorshift64 in %r13; returns it in %rax.
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
    .section .note.GNU-stack, "", @progbits
