import Foundation
import Testing

extension VirtualMachines {
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason))
    struct BootTests {
        @Test("-kernel boots an ELF64 guest in 64-bit mode and its debug-exit value becomes the exit status")
        func kernelAndDebugExit() throws {
            let kernel = try GuestBuilder.kernel("hello-kernel")
            let result = try runCprvmm(["-kernel", kernel, "-m", "64"])
            #expect(result.stdout.contains("hello from the -kernel guest"))
            // The guest wrote 0x21 to port 0x501: status (0x21 << 1) | 1, as with QEMU's isa-debug-exit.
            #expect(result.status == 67, "stderr: \(result.stderr)")
        }

        @Test("-bios runs a raw firmware image from the reset vector in real mode")
        func firmware() throws {
            let image = try GuestBuilder.firmware("hello-bios")
            let result = try runCprvmm(["-bios", image, "-m", "16"])
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
