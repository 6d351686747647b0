// spin.S: a 64 KiB real-mode firmware image that spins forever without an exit, for the
// pause-latency floor (bench/reference-vmm.c --pause, bench/run part d).
//
// Build (what bench/run does):
//   clang -target x86_64-linux-gnu -c spin.S -o spin.o
//   llvm-objcopy -O binary -j .text spin.o spin.bin           # exactly 65536 bytes
//
// Same layout as outloop.S: mapped at 4 GiB - 64 KiB, entered at the reset vector
// F000:FFF0 (file offset 0xFFF0), near jumps only.
//
// NOTE: this runs at CPL0 in real mode, which on this host (kvm_pvm) is executed by KVM's
// instruction emulator, not natively (docs/platform.md). How fast a kick (immediate_exit +
// signal) is noticed may differ from a natively running CPL3 spin such as cprvmm's built-in
// guest (mode=spin). reference-vmm --pause --cpl3 builds a CPL3 spin instead (no image).

    .code16
    .text
    .globl image_start
image_start:

    .org 0xFF00, 0xFF
start:
    cli
1:  jmp 1b                       // spins; never exits to the VMM

    .org 0xFFF0, 0xFF            // reset vector: CS:IP = F000:FFF0, physical 0xFFFFFFF0
reset:
    jmp start
    .org 0x10000, 0xFF           // pad the image to exactly 64 KiB
