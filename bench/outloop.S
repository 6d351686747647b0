// outloop.S: a 64 KiB real-mode firmware image for the port-I/O exit benchmark (bench/run).
//
// It executes COUNT `out %al, %dx` to port PORT (default 0x80, the POST-code port, which
// cprvmm ignores silently), then writes EXIT_VALUE to QEMU's isa-debug-exit port 0x501,
// which ends cprvmm with exit status (EXIT_VALUE << 1) | 1 and ends bench/reference-vmm.
//
// Build (what bench/run does):
//   clang -target x86_64-linux-gnu -c -DCOUNT=200000 outloop.S -o outloop.o
//   llvm-objcopy -O binary -j .text outloop.o outloop.bin      # exactly 65536 bytes
//
// Layout: the image is mapped at 4 GiB - 64 KiB. The vCPU starts at the reset vector with
// CS selector 0xF000, CS base 0xFFFF0000, IP 0xFFF0, so file offset == IP offset as long
// as only near jumps are used (no far jump reloads CS; real mode has no IP-relative data
// and this program needs no data at all). The code sits just below the reset vector so
// the reset-vector jump is a short backward jump (no 16-bit IP wrap-around involved).
// A VMM that maps only the top 64 KiB below 4 GiB (no ISA alias at 0xF0000) runs it.
//
// All of it runs at CPL0 in real mode, i.e. in KVM's instruction emulator on kvm_pvm
// (see docs/platform.md): three instructions per iteration, one of which exits to the VMM.

#ifndef COUNT
#define COUNT 200000
#endif
#ifndef PORT
#define PORT 0x80
#endif
#ifndef EXIT_VALUE
#define EXIT_VALUE 0x10          // cprvmm exit status (0x10 << 1) | 1 = 33
#endif

    .code16
    .text
    .globl image_start
image_start:

    .org 0xFF00, 0xFF
start:
    cli
    mov $PORT, %dx
    movl $COUNT, %ecx            // 32-bit count in 16-bit code (operand-size prefix)
    xor %al, %al
1:  out %al, %dx                 // the exit being measured
    decl %ecx
    jnz 1b

    mov $0x501, %dx              // isa-debug-exit: the VMM ends here
    mov $EXIT_VALUE, %al
    out %al, %dx
2:  hlt                          // not reached on a VMM that honours 0x501
    jmp 2b

    .org 0xFFF0, 0xFF            // reset vector: CS:IP = F000:FFF0, physical 0xFFFFFFF0
reset:
    jmp start
    .org 0x10000, 0xFF           // pad the image to exactly 64 KiB
