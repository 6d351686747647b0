import Foundation
import Testing

extension VirtualMachines {
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason))
    struct BootTests {
        @Test("-kernel boots an ELF64 guest in 64-bit mode and its debug-exit value becomes the exit status")
        func kernelAndDebugExit() throws {
            let kernel = try GuestBuilder.kernel("hello-kernel")
            let result = try runCprvmm(["-kernel", kernel, "-m", "64", "-device", "isa-debug-exit,iobase=0x501,iosize=0x02"])
            #expect(result.stdout.contains("hello from the -kernel guest"))
            // The guest wrote 0x21 to port 0x501: status (0x21 << 1) | 1, as with QEMU's isa-debug-exit.
            #expect(result.status == 67, "stderr: \(result.stderr)")
            #expect(result.stderr.contains("the guest wrote 0x21 to isa-debug-exit: exiting with status 67"), "\(result.stderr)")
        }

        @Test("without -device isa-debug-exit, port 0x501 is an empty port: the guest cannot end the VM there")
        func noDebugExitByDefault() throws {
            let kernel = try GuestBuilder.kernel("hello-kernel")
            let result = try runCprvmm(["-kernel", kernel, "-m", "64"])
            #expect(result.stdout.contains("hello from the -kernel guest"))
            // The write is logged and ignored; the guest then halts with interrupts off.
            #expect(result.status == 1, "stderr: \(result.stderr)")
            #expect(result.stderr.contains("unknown I/O port 0x501"), "\(result.stderr)")
            #expect(result.stderr.contains("halted with interrupts disabled"), "\(result.stderr)")
        }

        @Test("isa-debug-exit moved onto COM1's ports is refused, naming both")
        func debugExitOverlap() throws {
            let result = try runCprvmm(["-m", "16", "-device", "isa-debug-exit,iobase=0x3fe"])
            #expect(result.status == 1)
            #expect(result.stderr.contains("-device isa-debug-exit: I/O ports 0x3fe-0x3ff overlap COM1 at 0x3f8-0x3ff"), "\(result.stderr)")
        }

        @Test("MMIO where nothing is (PCI hole, HPET address, above RAM) reads all ones and ignores writes")
        func mmioToNothing() throws {
            let kernel = try GuestBuilder.kernel("mmio-kernel")
            let result = try runCprvmm(["-kernel", kernel, "-m", "64", "-device", "isa-debug-exit"])
            #expect(result.stdout.contains("mmio ok"), "stdout: \(result.stdout) stderr: \(result.stderr)")
            #expect(result.status == 67, "stderr: \(result.stderr)")
            #expect(result.stderr.contains("guest MMIO read of 4 bytes at 0xe0000000 hits no device"), "\(result.stderr)")
        }

        @Test("-bios runs a raw firmware image from the reset vector in real mode")
        func firmware() throws {
            let image = try GuestBuilder.firmware("hello-bios")
            let result = try runCprvmm(["-bios", image, "-m", "16", "-device", "isa-debug-exit"])
            #expect(result.stdout.contains("hello from the -bios firmware"))
            #expect(result.status == 33, "stderr: \(result.stderr)")
            #expect(result.stderr.contains("RAM pc.bios: 64 KiB"))
        }

        @Test("a guest halted with interrupts disabled stops the VM with a message")
        func haltedForever() throws {
            let image = try GuestBuilder.firmware("halt-bios")
            let result = try runCprvmm(["-bios", image, "-m", "16"])
            #expect(result.status == 1)
            #expect(result.stderr.contains("vCPU 0 halted with interrupts disabled; stopping the VM"))
            #expect(result.stderr.contains("RIP="))
        }

        @Test("a triple fault prints the registers and exits non-zero")
        func tripleFault() throws {
            let kernel = try GuestBuilder.kernel("triple-fault-kernel")
            let result = try runCprvmm(["-kernel", kernel, "-m", "64"])
            #expect(result.status == 1)
            #expect(result.stderr.contains("vCPU 0: guest triple fault or shutdown request"))
            #expect(result.stderr.contains("RAX=0000000000001234"), "register dump missing: \(result.stderr)")
        }
    }
}
