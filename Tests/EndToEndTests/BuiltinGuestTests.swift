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

        // MARK: dirty=PCT

        /// x-query-cprvmm's `builtin-guest` object, numbers as Int.
        static func guestStatus(qmp: String) throws -> [String: Int] {
            let status = try LiveUpdateTests.query(qmp: qmp)["builtin-guest"] as? [String: Any] ?? [:]
            return status.compactMapValues { ($0 as? NSNumber)?.intValue }
        }

        /// Boot information field `offset` (guest_layout.h) read through the RAM memfd.
        static func bootInfo(_ fd: Int32, _ offset: Int) -> UInt64 {
            var value: UInt64 = 0
            _ = pread(fd, &value, 8, off_t(0x500 + offset))
            return value
        }

        @Test("dirty=100 rewrites about 100% of RAM a second in sweeps over the free RAM, without corruption")
        func dirtyRate() throws {
            let qmp = temporarySocketPath("dirty")
            let vm = try VMProcess(["-m", "64", "-builtin-guest", "dirty=100", "-qmp", "unix:\(qmp),server=on,wait=off"])
            vm.waitForLine(containing: "memory filled")
            let first = try Self.guestStatus(qmp: qmp)
            let started = Date()
            usleep(2_000_000)
            let second = try Self.guestStatus(qmp: qmp)
            let seconds = Date().timeIntervalSince(started)
            // The area is the ~40 MiB above the default fill=25: a sweep takes ~0.6 s at full speed.
            var last = second
            let deadline = Date().addingTimeInterval(30)
            while (last["dirty-sweeps"] ?? 0) < 1 && Date() < deadline {
                usleep(100_000)
                last = try Self.guestStatus(qmp: qmp)
            }
            vm.waitForOutput("tick 1000") { VMProcess.ticks(in: $0).last ?? 0 >= 1000 }
            _ = vm.terminate()
            let pages = (second["dirty-pages"] ?? 0) - (first["dirty-pages"] ?? 0)
            let expected = 64.0 * 256 * seconds  // 64 MiB = 16384 pages a second
            // Only a loose lower bound: the machine may be loaded, and speed is not what this checks.
            #expect(Double(pages) > 0.2 * expected, "\(pages) pages in \(seconds) s, asked for \(Int(expected)): \(first) -> \(second)")
            #expect((last["dirty-sweeps"] ?? 0) >= 1, "no sweep completed: \(last)")
            #expect(last["corruptions"] == 0)
            #expect(!vm.stdout.contains("MEMORY CORRUPTION"))
            // Every 1000th tick line adds the pages written; without dirty= the fields stay away.
            #expect(vm.stdoutLines.contains { $0.hasPrefix("tick 1000 ") && $0.contains(" dirty-pages ") })
            let off = try VMProcess(["-m", "32", "-qmp", "unix:\(qmp),server=on,wait=off"])
            off.waitForLine(containing: "memory filled")
            let plain = try Self.guestStatus(qmp: qmp)
            _ = off.terminate()
            #expect(plain["ticks"] != nil && plain["dirty-pages"] == nil && plain["dirty-sweeps"] == nil, "\(plain)")
        }

        @Test("dirty=: a page holding an older sweep number (as a migration that missed it leaves) is reported")
        func dirtyStalePageIsReported() throws {
            let qmp = temporarySocketPath("dirty")
            let vm = try VMProcess(["-machine", "memfd-alloc=on", "-m", "64", "-builtin-guest", "dirty=100", "-qmp", "unix:\(qmp),server=on,wait=off"])
            vm.waitForLine(containing: "memory filled")
            let fdPath = try #require(memfdPath(pid: vm.pid, name: "pc.ram"), "no memfd:pc.ram among /proc/\(vm.pid)/fd")
            let fd = open(fdPath, O_RDWR)
            try #require(fd >= 0)
            defer { close(fd) }
            // BI_DIRTY_RATE, BI_DIRTY_START, BI_DIRTY_END
            #expect(Self.bootInfo(fd, 224) == 16384)
            let start = Self.bootInfo(fd, 232), end = Self.bootInfo(fd, 240)
            #expect(start >= 8 << 20 && end == 64 << 20 && end - start >= 32 << 20, "dirty area \(start)-\(end)")
            // Word 0 of every 8th page becomes a value no sweep wrote: pages ahead of the
            // cursor are caught in this sweep, pages behind it in the next.
            var stale: UInt64 = 0xDEAD
            var written = 0
            for page in stride(from: start, to: end, by: 8 * 4096) {
                #expect(pwrite(fd, &stale, 8, off_t(page)) == 8)
                written += 1
            }
            var corruptions = 0
            let deadline = Date().addingTimeInterval(60)
            while corruptions < written * 9 / 10 && Date() < deadline {
                usleep(100_000)
                corruptions = try Self.guestStatus(qmp: qmp)["corruptions"] ?? 0
            }
            _ = vm.terminate()
            // Nearly all: one the guest rewrote between its check and its store is lost.
            #expect(corruptions >= written * 9 / 10 && corruptions <= written, "\(corruptions) corruptions for \(written) stale pages")
            let reports = vm.stdoutLines.filter { $0.hasPrefix("MEMORY CORRUPTION at 0x") }
            #expect(reports.contains { $0.hasSuffix(", found 0x000000000000dead)") }, "\(reports.prefix(3))")
            // The first 100 are printed, then every 1000th.
            #expect(reports.count >= min(corruptions, 100) && reports.count <= 100 + corruptions / 1000, "\(reports.count) reports of \(corruptions)")
        }

        @Test("dirty=: a mem-path file an earlier VM used starts over clean (no false reports, ticks from 1)")
        func dirtyReusedFile() throws {
            let path = "/dev/shm/cprvmm-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            defer { unlink(path) }
            let arguments = [
                "-object", "memory-backend-file,id=ram0,size=32M,mem-path=\(path),share=on",
                "-machine", "memory-backend=ram0", "-builtin-guest", "dirty=200",
            ]
            for run in 1...2 {
                let vm = try VMProcess(arguments)
                vm.waitForOutput("tick 1500") { VMProcess.ticks(in: $0).last ?? 0 >= 1500 }
                _ = vm.terminate()
                let ticks = VMProcess.ticks(in: vm.stdout)
                #expect(ticks.first == 1, "run \(run) did not start from tick 1")
                #expect(!vm.stdout.contains("MEMORY CORRUPTION"), "run \(run): \(vm.stdoutLines.first { $0.contains("CORRUPTION") } ?? "")")
                #expect(vm.stdoutLines.contains { $0.hasPrefix("tick 1000 ") && $0.contains(" corruptions 0 ") && $0.contains(" dirty-pages ") })
            }
        }

        @Test("dirty=100 across live updates: sweeps go on, no page lost or corrupted")
        func dirtyAcrossLiveUpdates() throws {
            let next = LiveUpdateTests.nextBinary ?? Binaries.cprvmm
            let vm = try LiveUpdateTests.start(options: ["-m", "64", "-machine", "memfd-alloc=on", "-builtin-guest", "fill=50,dirty=100"])
            let before = try Self.guestStatus(qmp: vm.qmp)
            try LiveUpdateTests.update(vm, to: next)
            try LiveUpdateTests.update(vm, to: Binaries.cprvmm)
            // Two more sweeps at least (~0.4 s each over the ~24 MiB area): every page written
            // before the updates is checked again after them.
            let target = (try Self.guestStatus(qmp: vm.qmp)["dirty-sweeps"] ?? 0) + 2
            var after: [String: Int] = [:]
            let deadline = Date().addingTimeInterval(60)
            while (after["dirty-sweeps"] ?? 0) < target && Date() < deadline {
                usleep(100_000)
                after = try Self.guestStatus(qmp: vm.qmp)
            }
            #expect((after["dirty-sweeps"] ?? 0) >= target, "sweeps stalled: \(before) -> \(after)")
            #expect((after["dirty-pages"] ?? 0) > (before["dirty-pages"] ?? 0))
            #expect(after["corruptions"] == 0, "\(after)")
            LiveUpdateTests.expectGuestIntact(vm)
            _ = vm.process.terminate()
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
