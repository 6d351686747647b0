import Foundation
import Testing

extension VirtualMachines {
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason))
    struct BuiltinGuestTests {
        @Test("the built-in guest boots with no arguments and ticks in order")
        func ticksInOrder() throws {
            let vm = try VMProcess([])
            vm.waitForOutput("tick 300") { VMProcess.ticks(in: $0).last ?? 0 >= 300 }
            let status = vm.terminate()
            #expect(status == 0, "SIGTERM is an orderly shutdown")
            let ticks = VMProcess.ticks(in: vm.stdout)
            #expect(ticks.first == 1)
            // Every tick from 1 to the last, none missing, none repeated.
            #expect(VMProcess.firstBreak(in: ticks) == nil, "tick sequence has a gap or repeat: \(String(describing: VMProcess.firstBreak(in: ticks)))")
            #expect(vm.stdout.contains("cprvmm built-in guest: memory filled, ticking"))
            #expect(!vm.stdout.contains("MEMORY CORRUPTION"))
            #expect(vm.stderr.contains("received SIGTERM, shutting down"))
        }

        @Test("the guest's memory verification completes passes without corruption")
        func verificationPasses() throws {
            let vm = try VMProcess(["-m", "64", "-builtin-guest", "fill=50"])
            vm.waitForOutput(timeout: 60, "tick 3000 with a completed pass") { text in
                text.split(separator: "\n").contains { $0.hasPrefix("tick 3000 passes ") }
            }
            _ = vm.terminate()
            let line = vm.stdoutLines.first { $0.hasPrefix("tick 3000 passes ") } ?? ""
            let fields = line.split(separator: " ")
            // "tick 3000 passes P corruptions C"
            #expect(fields.count >= 6)
            #expect((Int(fields[safe: 3] ?? "") ?? 0) >= 1, "no verification pass completed: \(line)")
            #expect(fields[safe: 5] == "0", "corruptions reported: \(line)")
        }

        @Test("a page corrupted from the host through the memfd is reported by the guest")
        func corruptionIsReported() throws {
            let vm = try VMProcess(["-machine", "memfd-alloc=on", "-m", "64", "-builtin-guest", "fill=50"])
            vm.waitForLine(containing: "memory filled")
            let fdPath = try #require(memfdPath(pid: vm.pid, name: "pc.ram"), "no memfd:pc.ram among /proc/\(vm.pid)/fd")
            // The pattern lives in [8 MiB, 8 MiB + 32 MiB): overwrite one word at 16 MiB.
            let fd = open(fdPath, O_RDWR)
            try #require(fd >= 0)
            var garbage: UInt64 = 0xDEAD_BEEF_DEAD_BEEF
            #expect(pwrite(fd, &garbage, 8, 16 << 20) == 8)
            close(fd)
            vm.waitForLine(containing: "MEMORY CORRUPTION at 0x0000000001000000", timeout: 60)
            _ = vm.terminate()
            #expect(vm.stdout.contains("found 0xdeadbeefdeadbeef"))
        }

        @Test("memfd-alloc=on puts main RAM in a named memfd; off keeps it anonymous")
        func memfdAllocation() throws {
            let on = try VMProcess(["-machine", "memfd-alloc=on", "-m", "32"])
            on.waitForLine(containing: "tick 1")
            #expect(memfdPath(pid: on.pid, name: "pc.ram") != nil)
            _ = on.terminate()
            #expect(on.stderr.contains("RAM pc.ram: 32 MiB, memfd, shared"))

            let off = try VMProcess(["-m", "32"])
            off.waitForLine(containing: "tick 1")
            #expect(memfdPath(pid: off.pid, name: "pc.ram") == nil)
            _ = off.terminate()
            #expect(off.stderr.contains("RAM pc.ram: 32 MiB, anonymous, private"))
        }

        @Test("guest RAM from memory-backend-file lives in the named file")
        func fileBackend() throws {
            let path = "/dev/shm/cprvmm-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            defer { unlink(path) }
            let vm = try VMProcess([
                "-object", "memory-backend-file,id=ram0,size=32M,mem-path=\(path),share=on",
                "-machine", "memory-backend=ram0", "-builtin-guest", "fill=50",
            ])
            vm.waitForLine(containing: "memory filled")
            // The guest's pattern is visible in the file: the u64 at address a is a*K ^ X.
            let fd = open(path, O_RDONLY)
            try #require(fd >= 0)
            var word: UInt64 = 0
            let address: UInt64 = 8 << 20
            #expect(pread(fd, &word, 8, off_t(address)) == 8)
            close(fd)
            #expect(word == (address &* 0x9E37_79B9_7F4A_7C15) ^ 0x5A5A_5A5A_5A5A_5A5A)
            _ = vm.terminate()
        }

        @Test("-smp 2 runs two vCPUs: the second one observes the ticks")
        func twoVcpus() throws {
            let vm = try VMProcess(["-smp", "2", "-m", "64"])
            vm.waitForOutput(timeout: 60, "tick 2000") { VMProcess.ticks(in: $0).last ?? 0 >= 2000 }
            _ = vm.terminate()
            let line = vm.stdoutLines.first { $0.hasPrefix("tick 2000 ") } ?? ""
            let cpu1 = line.components(separatedBy: " cpu1-ticks ").last.flatMap { Int($0) } ?? 0
            // vCPU 1 sleeps until vCPU 0's IPI each tick; it must have seen most of them.
            #expect(cpu1 > 1000, "second vCPU barely ran: \(line)")
        }

        @Test("spin mode ticks too (the benchmark mode)")
        func spinMode() throws {
            let vm = try VMProcess(["-m", "32", "-builtin-guest", "mode=spin"])
            vm.waitForOutput("tick 200") { VMProcess.ticks(in: $0).last ?? 0 >= 200 }
            _ = vm.terminate()
            #expect(VMProcess.firstBreak(in: VMProcess.ticks(in: vm.stdout)) == nil)
        }

        @Test("the built-in guest echoes serial input typed on stdio")
        func serialInput() throws {
            let vm = try VMProcess(["-m", "32"])
            vm.waitForLine(containing: "tick 10")
            vm.sendInput("hello guest\n")
            vm.waitForLine(containing: "echo: hello guest")
            _ = vm.terminate()
        }
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}

/// The /proc path of process `pid`'s memfd called `name`, if it has one.
func memfdPath(pid: Int32, name: String) -> String? {
    let dir = "/proc/\(pid)/fd"
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return nil }
    for entry in entries {
        let path = dir + "/" + entry
        if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: path), target.hasPrefix("/memfd:\(name) ") {
            return path
        }
    }
    return nil
}
