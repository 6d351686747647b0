import Foundation
import Testing

extension VirtualMachines {
    /// SeaBIOS booting Tests/Guests/disk-boot-sector.S from a virtio-blk disk: the boot sector's
    /// int 13h reads and writes go through SeaBIOS's virtio driver to cprvmm's device.
    @Suite(.enabled(if: Host.seabiosAvailable, Host.noSeabiosReason))
    struct DiskBootTests {
        static let passes = 0x30

        /// A 1 MiB raw image: the boot sector, then sectors 1-16 each full of its own number.
        static func makeDisk() throws -> String {
            var image = try GuestBuilder.bootSector("disk-boot-sector")
            for sector in 1...16 { image += [UInt8](repeating: UInt8(sector), count: 512) }
            image += [UInt8](repeating: 0, count: (1 << 20) - image.count)
            let path = try GuestBuilder.temporaryDirectory().appendingPathComponent("disk.img").path
            try Data(image).write(to: URL(fileURLWithPath: path))
            return path
        }

        static func arguments(_ disk: String, cache: String = "writeback", memory: [String] = ["-machine", "memfd-alloc=on"]) -> [String] {
            memory + ["-bios", Host.seabios, "-m", "128", "-device", "isa-debug-exit", "-drive", "file=\(disk),format=raw,if=virtio,cache=\(cache)"]
        }

        /// Every pass printed once, in order, and the written sectors hold the last pass's bytes.
        static func expectAllPasses(_ output: String, disk: String) throws {
            #expect(!output.contains("BAD"), "\(output.suffix(500))")
            let passes = output.split(whereSeparator: \.isNewline).compactMap { line -> Int? in
                guard line.hasPrefix("pass "), line.contains(" ok") else { return nil }
                return Int(line.dropFirst(5).prefix(4), radix: 16)
            }
            #expect(passes == Array(0..<Self.passes), "passes: \(passes)")
            let image = try [UInt8](Data(contentsOf: URL(fileURLWithPath: disk)))
            for index in 0..<16 {
                let sector = image[(64 + index) * 512..<(65 + index) * 512]
                let expected = UInt8((Self.passes - 16 + index) ^ 0x5A)
                #expect(sector.allSatisfy { $0 == expected }, "sector \(64 + index) holds \(sector.first!), expected \(expected)")
            }
        }

        @Test("SeaBIOS finds the virtio disk, boots its boot sector, and the sector's reads and writes reach the image")
        func boot() throws {
            let disk = try Self.makeDisk()
            let vm = try VMProcess(Self.arguments(disk) + ["-debugcon", "stdio"])
            #expect(vm.waitForExit(timeout: 120) == 33, "\(vm.stderr.suffix(1500))")
            #expect(vm.stderr.contains("found virtio-blk at 00:02.0"))
            #expect(vm.stderr.contains("Booting from 0000:7c00"))
            #expect(vm.stdout.contains("boot sector: running from the virtio disk"))
            try Self.expectAllPasses(vm.stdout, disk: disk)
        }

        @Test("live updates while the boot sector reads and writes: every request completes once, the image holds every write",
              arguments: ["writeback", "none"])
        func liveUpdateDuringDiskIO(cache: String) throws {
            let disk = try Self.makeDisk()
            if cache == "none", !Host.supportsDirectIO(at: disk) {
                print("skipped cache=none: the file system under \(disk) has no O_DIRECT")
                return
            }
            let qmp = temporarySocketPath("disk")
            let arguments = Self.arguments(disk, cache: cache) + ["-qmp", "unix:\(qmp),server=on,wait=off"]
            let process = try VMProcess(arguments)
            defer { _ = process.terminate() }
            let vm = LiveUpdateTests.VM(process: process, qmp: qmp, state: "", arguments: arguments)
            for target in ["pass 0004", "pass 0010"] {
                #expect(process.waitForOutput(timeout: 120, target) { $0.contains(target) }, "\(process.stderr.suffix(1500))")
                try LiveUpdateTests.update(vm, to: LiveUpdateTests.nextBinary ?? Binaries.cprvmm, uri: "memfd:")
            }
            #expect(!process.stdout.contains("pass 002f"), "the boot sector ended before the updates: nothing was tested")
            #expect(process.waitForExit(timeout: 120) == 33, "\(process.stderr.suffix(1500))")
            try Self.expectAllPasses(process.stdout, disk: disk)
        }

        @Test("a new image that cannot load the state rolls back mid-I/O: the old image resumes the disk, nothing lost")
        func rollbackDuringDiskIO() throws {
            let disk = try Self.makeDisk()
            let qmp = temporarySocketPath("disk")
            let arguments = Self.arguments(disk) + ["-qmp", "unix:\(qmp),server=on,wait=off"]
            let process = try VMProcess(arguments)
            defer { _ = process.terminate() }
            let vm = LiveUpdateTests.VM(process: process, qmp: qmp, state: "", arguments: arguments)
            #expect(process.waitForOutput(timeout: 120, "pass 0004") { $0.contains("pass 0004") }, "\(process.stderr.suffix(1500))")
            let failure = try LiveUpdateTests.updateFailure(
                vm, command: ["/usr/bin/env", "CPRVMM_INJECT_LOAD_FAILURE=1", LiveUpdateTests.nextBinary ?? Binaries.cprvmm] + arguments)
            #expect(failure.contains("load failure injected"), "\(failure)")
            #expect(!process.stdout.contains("pass 002f"), "the boot sector ended before the rollback: nothing was tested")
            #expect(process.waitForExit(timeout: 120) == 33, "\(process.stderr.suffix(1500))")
            #expect(process.stderr.contains("rolling back to"))
            try Self.expectAllPasses(process.stdout, disk: disk)
        }

        static func state() -> String {
            FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-disk-\(UUID().uuidString)").path
        }

        /// Migrates the VM in `mode` to a state file in the middle of the boot sector's passes,
        /// quits it, and resumes it in a new process: every pass runs once across the two.
        func migrateMidway(mode: String, memory: [String]) throws {
            let disk = try Self.makeDisk()
            let state = Self.state()
            defer { unlink(state) }
            let arguments = Self.arguments(disk, memory: memory)
            let (source, client) = try MigrationTests.start(arguments)
            #expect(source.waitForOutput(timeout: 120, "pass 0008") { $0.contains("pass 0008") }, "\(source.stderr.suffix(1500))")
            _ = client.execute(#"{"execute": "migrate-set-parameters", "arguments": {"mode": "\#(mode)"}}"#)
            #expect(client.execute(#"{"execute": "migrate", "arguments": {"uri": "file:\#(state)"}}"#) == #"{"return": {}}"#)
            #expect(MigrationTests.waitForMigration(client).contains(#""status": "completed""#))
            _ = client.execute(#"{"execute": "quit"}"#)
            #expect(source.waitForExit() == 0)
            #expect(!source.stdout.contains("pass 002f"), "the boot sector ended before the migration: nothing was tested")
            let target = try VMProcess(arguments + ["-incoming", "file:\(state)"])
            #expect(target.waitForExit(timeout: 120) == 33, "\(target.stderr.suffix(1500))")
            try Self.expectAllPasses(source.stdout + target.stdout, disk: disk)
        }

        @Test("normal migration through a file in the middle of the disk I/O: the new process finishes every pass")
        func normalMigration() throws {
            try migrateMidway(mode: "normal", memory: ["-machine", "memfd-alloc=on"])
        }

        @Test("cpr-reboot in the middle of the disk I/O: RAM stays in its file, the disk reopens, every pass runs once")
        func cprReboot() throws {
            let ram = "/dev/shm/cprvmm-disk-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            defer { unlink(ram) }
            try migrateMidway(mode: "cpr-reboot", memory: ["-object", "memory-backend-file,id=ram0,size=128M,mem-path=\(ram),share=on", "-machine", "memory-backend=ram0"])
        }

        @Test("query-pci and query-block describe the disk as QEMU does; info pci and info block say it for people")
        func monitors() throws {
            let disk = try Self.makeDisk()
            let (vm, client) = try MigrationTests.start(["-m", "64", "-drive", "file=\(disk),format=raw,if=none,id=d0,readonly=on",
                                                         "-device", "virtio-blk-pci,drive=d0,id=disk0,addr=0x4", "-serial", "null"])
            defer { _ = vm.terminate() }
            let pci = client.execute(#"{"execute": "query-pci"}"#) ?? ""
            #expect(pci.contains(#""slot": 4"#) && pci.contains(#""device": 4162"#) && pci.contains(#""qdev_id": "disk0""#), "\(pci)")
            #expect(pci.contains(#""desc": "Host bridge""#) && pci.contains(#""desc": "ISA bridge""#))
            let block = client.execute(#"{"execute": "query-block"}"#) ?? ""
            #expect(block.contains(#""device": "d0""#) && block.contains(#""ro": true"#) && block.contains(#""virtual-size": 1048576"#), "\(block)")
            let info = client.execute(#"{"execute": "human-monitor-command", "arguments": {"command-line": "info pci"}}"#) ?? ""
            #expect(info.contains("SCSI controller: PCI device 1af4:1042") && info.contains(#"id \"disk0\""#), "\(info)")
            let blockInfo = client.execute(#"{"execute": "human-monitor-command", "arguments": {"command-line": "info block"}}"#) ?? ""
            #expect(blockInfo.contains("d0: \(disk) (raw, read-only)"), "\(blockInfo)")
        }
    }
}

extension VirtualMachines {
    /// The built-in guest's disk workload (Sources/CGuest/builtin_guest.S): sequence-numbered
    /// 4 KiB blocks written, flushed, read back and checked, over the first 1 MiB of the disk.
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason))
    struct BuiltinGuestDiskTests {
        static func makeDisk(megabytes: Int = 4) throws -> String {
            let path = try GuestBuilder.temporaryDirectory().appendingPathComponent("disk.img").path
            try Data(count: megabytes << 20).write(to: URL(fileURLWithPath: path))
            return path
        }

        static func status(qmp: String) -> [String: Any] {
            ((try? LiveUpdateTests.query(qmp: qmp))?["builtin-guest"] as? [String: Any]) ?? [:]
        }

        /// The built-in guest's status page through an open QMP connection.
        static func status(_ client: QMPLineClient) -> [String: Any] {
            let reply = client.execute(#"{"execute": "x-query-cprvmm"}"#) ?? ""
            let object = (try? JSONSerialization.jsonObject(with: Data(reply.utf8))) as? [String: Any]
            return ((object?["return"] as? [String: Any])?["builtin-guest"] as? [String: Any]) ?? [:]
        }

        static func diskOps(qmp: String) -> Int { (status(qmp: qmp)["disk-ops"] as? NSNumber)?.intValue ?? -1 }

        /// Every block the guest wrote holds one whole block of its pattern, with the block's
        /// sequence number in word 0 (the guest's own check, repeated by the host on the file).
        static func expectImageConsistent(_ path: String) throws -> Int {
            let image = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            let blocks = min(image.count / 4096, 256)
            var written = 0
            for block in 0..<blocks {
                let words = image[(block * 4096)..<((block + 1) * 4096)].withUnsafeBytes { Array($0.bindMemory(to: UInt64.self)) }
                guard words.contains(where: { $0 != 0 }) else { continue }
                let seq = words[0]
                #expect(Int(seq % UInt64(blocks)) == block, "block \(block) holds sequence \(seq)")
                for i in 1..<512 {
                    let expected = ((seq << 9) &+ UInt64(i)) &* 0x9E37_79B9_7F4A_7C15 ^ 0x5A5A_5A5A_5A5A_5A5A
                    if words[i] != expected {
                        Issue.record("block \(block) (sequence \(seq)) word \(i) differs")
                        break
                    }
                }
                written += 1
            }
            return written
        }

        @Test("the built-in guest drives the disk through 50 live updates: no DISK CORRUPTION, the image checks out")
        func fiftyUpdates() throws {
            let disk = try Self.makeDisk()
            let vm = try LiveUpdateTests.start(["-drive", "file=\(disk),format=raw,if=virtio"])
            defer { _ = vm.process.terminate() }
            #expect(vm.process.waitForOutput("the disk workload") { $0.contains("disk: virtio-blk ready") })
            let next = LiveUpdateTests.nextBinary ?? Binaries.cprvmm
            let interruptsBefore = (Self.status(qmp: vm.qmp)["disk-interrupts"] as? NSNumber)?.intValue ?? 0
            var worst: [Int] = []
            for round in 0..<50 {
                let before = Self.diskOps(qmp: vm.qmp)
                try LiveUpdateTests.update(vm, to: round % 2 == 0 ? next : Binaries.cprvmm, uri: "memfd:")
                // The guest's I/O goes on after each update before the next one starts.
                let deadline = Date().addingTimeInterval(30)
                while Self.diskOps(qmp: vm.qmp) < before + 30, Date() < deadline { usleep(10_000) }
                #expect(Self.diskOps(qmp: vm.qmp) >= before + 30,
                        "no disk I/O after update \(round + 1): guest \(Self.status(qmp: vm.qmp)); \(vm.process.stderr.suffix(800))")
                worst.append((Self.status(qmp: vm.qmp)["disk-worst-us"] as? NSNumber)?.intValue ?? -1)
            }
            let status = Self.status(qmp: vm.qmp)
            print("built-in guest disk: \(status["disk-ops"] ?? "?") requests, worst \(status["disk-worst-us"] ?? "?") us across 50 updates")
            #expect((status["disk-errors"] as? NSNumber)?.intValue == 0)
            // The guest sleeps until each completion's MSI-X interrupt: the vector, its table
            // entry and the enable bit crossed every update.
            let interrupts = (status["disk-interrupts"] as? NSNumber)?.intValue ?? 0
            #expect(interrupts > interruptsBefore + 1000, "MSI-X interrupts: \(interruptsBefore) before the updates, \(interrupts) after")
            #expect(!vm.process.stdout.contains("DISK CORRUPTION"), "\(vm.process.stdoutLines.filter { $0.contains("DISK") }.prefix(3))")
            LiveUpdateTests.expectGuestIntact(vm)
            _ = vm.process.terminate()
            #expect(try Self.expectImageConsistent(disk) > 10)
        }

        /// Migrates the built-in guest with its disk workload to a file in `mode`, quits, and
        /// resumes it in a new process: the workload goes on without DISK CORRUPTION.
        func migrate(mode: String, memory: [String]) throws {
            let disk = try Self.makeDisk()
            let state = DiskBootTests.state()
            defer { unlink(state) }
            let arguments = memory + ["-drive", "file=\(disk),format=raw,if=virtio", "-builtin-guest", "fill=50"]
            let (source, client) = try MigrationTests.start(arguments)
            source.waitForOutput("tick 1100") { VMProcess.ticks(in: $0).last ?? 0 >= 1100 }
            _ = client.execute(#"{"execute": "migrate-set-parameters", "arguments": {"mode": "\#(mode)"}}"#)
            #expect(client.execute(#"{"execute": "migrate", "arguments": {"uri": "file:\#(state)"}}"#) == #"{"return": {}}"#)
            #expect(MigrationTests.waitForMigration(client).contains(#""status": "completed""#))
            let opsBefore = (Self.status(client)["disk-ops"] as? NSNumber)?.intValue ?? Int.max
            _ = client.execute(#"{"execute": "quit"}"#)
            #expect(source.waitForExit() == 0)
            let (target, targetClient) = try MigrationTests.start(arguments + ["-incoming", "file:\(state)"])
            defer { _ = target.terminate() }
            MigrationTests.expectGuestContinued(from: source, on: target)
            let status = Self.status(targetClient)
            #expect((status["disk-ops"] as? NSNumber)?.intValue ?? 0 > opsBefore, "\(status)")
            #expect((status["disk-errors"] as? NSNumber)?.intValue == 0)
            #expect(!(source.stdout + target.stdout).contains("DISK CORRUPTION"))
            _ = target.terminate()
            #expect(try Self.expectImageConsistent(disk) > 10)
        }

        @Test("the built-in guest's disk workload across a normal migration: it goes on, the image checks out")
        func normalMigration() throws {
            try migrate(mode: "normal", memory: ["-m", "64", "-machine", "memfd-alloc=on"])
        }

        @Test("the built-in guest's disk workload across cpr-reboot: it goes on, the image checks out")
        func cprReboot() throws {
            let ram = "/dev/shm/cprvmm-disk-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            defer { unlink(ram) }
            try migrate(mode: "cpr-reboot", memory: ["-object", "memory-backend-file,id=ram0,size=64M,mem-path=\(ram),share=on", "-machine", "memory-backend=ram0"])
        }

        @Test("a read-only disk is left alone by the built-in guest")
        func readOnly() throws {
            let disk = try Self.makeDisk(megabytes: 1)
            let vm = try VMProcess(["-m", "32", "-drive", "file=\(disk),format=raw,if=virtio,readonly=on"])
            defer { _ = vm.terminate() }
            #expect(vm.waitForOutput("the read-only notice") { $0.contains("disk: read-only; no disk workload") })
        }
    }
}
