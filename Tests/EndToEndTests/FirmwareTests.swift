import Foundation
import Testing

extension VirtualMachines {
    /// QEMU's own PC firmware (Debian's SeaBIOS) on cprvmm's PC platform: i440FX/PIIX3 PCI,
    /// CMOS/RTC, fw_cfg, port 0x92, and the debug console where SeaBIOS logs.
    @Suite(.enabled(if: Host.seabiosAvailable, Host.noSeabiosReason))
    struct FirmwareTests {
        static let options = ["-bios", Host.seabios, "-m", "128", "-machine", "memfd-alloc=on", "-debugcon", "stdio"]

        /// SeaBIOS's log (the debug console goes to stderr here).
        static func waitForLog(_ vm: VMProcess, _ text: String, timeout: Double = 60) -> Bool {
            vm.waitForOutput(timeout: timeout, text) { _ in vm.stderr.contains(text) }
        }

        @Test("SeaBIOS POSTs: it finds fw_cfg, the i440FX and PIIX3, the e820 map and COM1, and tries the boot devices")
        func post() throws {
            let vm = try VMProcess(Self.options)
            defer { _ = vm.terminate() }
            #expect(Self.waitForLog(vm, "Booting from Hard Disk"), "\(vm.stderr.suffix(2000))")
            let log = vm.stderr
            #expect(log.contains("Found QEMU fw_cfg"))
            #expect(log.contains("qemu/e820: addr 0x0000000000000000 len 0x0000000008000000 [RAM]"), "the RAM size from fw_cfg")
            #expect(log.contains("Found 2 PCI devices"))
            #expect(log.contains("PCI: init bdf=00:00.0 id=8086:1237"))
            #expect(log.contains("PCI: init bdf=00:01.0 id=8086:7000"))
            #expect(log.contains("Found 1 serial ports"))
            #expect(log.contains("00000000feffc000 - 00000000ff000000 = 2 RESERVED"), "KVM's TSS and identity map are reserved")
            // Without a VGA card SeaBIOS makes COM1 its console: its banner reaches the serial port.
            #expect(vm.waitForOutput("the SeaBIOS banner on COM1") { $0.contains("SeaBIOS (version") })
        }

        @Test("a live update in the middle of SeaBIOS's POST: the same POST goes on and reaches the boot devices")
        func liveUpdateDuringPOST() throws {
            let qmp = temporarySocketPath("fw")
            let arguments = Self.options + ["-qmp", "unix:\(qmp),server=on,wait=off"]
            let process = try VMProcess(arguments)
            defer { _ = process.terminate() }
            // The PCI probe comes early; the option ROM scan and boot follow seconds later.
            #expect(Self.waitForLog(process, "=== PCI device probing ==="), "\(process.stderr.suffix(2000))")
            let state = FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-fw-\(UUID().uuidString)").path
            let vm = LiveUpdateTests.VM(process: process, qmp: qmp, state: state, arguments: arguments)
            try LiveUpdateTests.update(vm, to: LiveUpdateTests.nextBinary ?? Binaries.cprvmm, uri: "memfd:")
            let afterUpdate = process.stderr
            #expect(!afterUpdate.contains("Booting from Hard Disk"), "the POST ended before the update: nothing was tested")
            #expect(Self.waitForLog(process, "Booting from Hard Disk"), "\(process.stderr.suffix(2000))")
            let log = process.stderr
            // One POST, not two: the firmware did not start over.
            #expect(log.components(separatedBy: "Running on KVM").count == 2, "\(log)")
            #expect(log.components(separatedBy: "e820 map has 6 items").count == 2, "\(log)")
        }
    }
}

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

        static func arguments(_ disk: String, cache: String = "writeback") -> [String] {
            ["-bios", Host.seabios, "-m", "128", "-machine", "memfd-alloc=on", "-device", "isa-debug-exit",
             "-drive", "file=\(disk),format=raw,if=virtio,cache=\(cache)"]
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
    }
}
