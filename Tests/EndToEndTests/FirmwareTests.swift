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
