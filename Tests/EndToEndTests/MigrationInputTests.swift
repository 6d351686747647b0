import Foundation
import Shared
import Testing

extension VirtualMachines {
    /// The receiving side of a migration faced with streams it must not take.
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason))
    struct MigrationInputTests {
        static let fixture = Binaries.packageRoot.appendingPathComponent("Tests/Fixtures/state-v1.cprvmm").path
        /// The options the fixture was saved with (scripts/make-state-fixture).
        static let fixtureOptions = ["-m", "16", "-builtin-guest", "fill=0"]

        /// A state saved by an earlier build on a host whose kernel lists PKRU in every XSAVE
        /// area (KVM_SET_XSAVE on a host without PKU refused it with EINVAL). Its guest code
        /// predates the built-in guest's handling of a TSC that goes back, so it ticks only on
        /// hosts whose uptime passed the saving host's (44 minutes): only the load is checked.
        static let pkuHostFixture = Binaries.packageRoot.appendingPathComponent("Tests/Fixtures/state-v1-pku-host.cprvmm").path

        /// The fixture with one section's payload changed by `change`, its CRC mended: damage
        /// that the framing cannot see.
        static func fixture(changing section: String = "cpu.0", _ change: (inout ArraySlice<UInt8>) -> Void) throws -> [UInt8] {
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: fixture)))
            var offset = 20
            while offset < bytes.count {
                let start = offset
                let nameLength = Int(bytes[offset])
                let name = String(decoding: bytes[offset + 1..<offset + 1 + nameLength], as: UTF8.self)
                offset += 1 + nameLength + 4
                let length = bytes[offset..<offset + 8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
                offset += 8
                if name == section {
                    change(&bytes[offset..<offset + length])
                    let crc = bytes[start..<offset + length].withUnsafeBytes { CRC32.checksum($0) }
                    bytes.replaceSubrange(offset + length..<offset + length + 4, with: withUnsafeBytes(of: crc.littleEndian, Array.init))
                }
                offset += length + 4
            }
            return bytes
        }

        @Test("the committed fixture of state format 1 loads, and its guest carries on")
        func fixtureLoads() throws {
            let vm = try VMProcess(Self.fixtureOptions + ["-incoming", "file:\(Self.fixture)"])
            vm.waitForOutput("ticks from the fixture") { VMProcess.ticks(in: $0).count >= 500 }
            _ = vm.terminate()
            let ticks = VMProcess.ticks(in: vm.stdout)
            let first = try #require(ticks.first)
            #expect(first > 1, "the guest restarted instead of continuing")
            #expect(VMProcess.firstBreak(in: ticks) == nil, "tick sequence broken: \(String(describing: VMProcess.firstBreak(in: ticks)))")
            #expect(!vm.stdout.contains("memory filled"))
        }

        @Test("a guest whose next tick lies hours ahead of this host's TSC (saved on a host up longer) ticks at once")
        func fixtureFromHostUpLonger() throws {
            // RBP holds the built-in guest's next tick deadline (TSC): 10 hours later at 3 GHz.
            let bytes = try Self.fixture(changing: "cpu.0") { payload in
                let at = payload.startIndex + 56
                let rbp = payload[at..<at + 8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * $1.offset) }
                payload.replaceSubrange(at..<at + 8, with: withUnsafeBytes(of: (rbp + 36_000 * 3_000_000_000).littleEndian, Array.init))
            }
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-ahead-\(UUID().uuidString)").path
            defer { unlink(path) }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let vm = try VMProcess(Self.fixtureOptions + ["-incoming", "file:\(path)"])
            vm.waitForOutput("ticks after the load") { VMProcess.ticks(in: $0).count >= 100 }
            _ = vm.terminate()
            let ticks = VMProcess.ticks(in: vm.stdout)
            #expect(ticks.count >= 100, "the guest waits for the saving host's time: \(vm.stderr)")
            #expect(VMProcess.firstBreak(in: ticks) == nil)
        }

        @Test("a state saved where XSAVE lists PKRU loads on a host without PKU")
        func fixtureFromPKUHost() throws {
            let path = temporarySocketPath("qmp")
            let vm = try VMProcess(Self.fixtureOptions + ["-incoming", "file:\(Self.pkuHostFixture)", "-qmp", "unix:\(path),server=on,wait=off"])
            defer { _ = vm.terminate() }
            var status: String?
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline {
                status = (try? QMPLineClient(path: path))?.execute(#"{"execute": "query-status"}"#)
                if status?.contains(#""status": "running""#) == true { break }
                usleep(50_000)
            }
            #expect(status?.contains(#""status": "running""#) == true, "query-status: \(status ?? "no answer"); \(vm.stderr)")
            #expect(!vm.stderr.contains("failed"), "\(vm.stderr)")
        }

        /// A copy of the fixture changed by `damage`, loaded by a new process: it must exit 1
        /// with `message` and never run the guest.
        func expectRefused(_ message: String, options: [String] = MigrationInputTests.fixtureOptions,
                           damage: (inout [UInt8]) -> Void = { _ in }) throws {
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.fixture)))
            damage(&bytes)
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-bad-\(UUID().uuidString)").path
            defer { unlink(path) }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let result = try runCprvmm(options + ["-incoming", "file:\(path)"])
            #expect(result.status == 1, "\(result.stderr)")
            #expect(result.stderr.contains("incoming migration from file:\(path) failed: \(message)"), "\(result.stderr)")
            #expect(!result.stdout.contains("tick"), "the guest ran from a refused stream")
        }

        @Test("a CRC-valid state whose UART registers are all 0xff is refused, not resumed into a silent console")
        func damagedUART() throws {
            try expectRefused("section 'serial.com1': IER 0xff has bits a 16550 never holds (0xf0); the state is damaged") { bytes in
                bytes = try! Self.fixture(changing: "serial.com1") { payload in
                    for i in payload.startIndex..<payload.startIndex + 9 { payload[i] = 0xFF }
                }
            }
        }

        @Test func truncated() throws {
            try expectRefused("state stream truncated") { $0.removeLast($0.count / 2) }
        }

        @Test func badMagic() throws {
            try expectRefused("not a cprvmm state stream (bad magic)") { $0[0] = UInt8(ascii: "X") }
        }

        @Test func badCRC() throws {
            // Byte 60 lies in the first section ("machine") payload: the RAM block name.
            try expectRefused("CRC mismatch in section 'machine': the state is corrupt") { $0[60] ^= 0x01 }
        }

        @Test func unknownFormatVersion() throws {
            try expectRefused("state format version 7 is not supported (this cprvmm reads 1...1)") { bytes in
                bytes.replaceSubrange(8..<12, with: [7, 0, 0, 0])
                // Keep the header CRC valid, so the version itself is what gets refused.
                let crc = bytes[0..<16].withUnsafeBytes { CRC32.checksum($0) }
                bytes.replaceSubrange(16..<20, with: withUnsafeBytes(of: crc.littleEndian, Array.init))
            }
        }

        @Test func absurdSectionLength() throws {
            // Header (20 bytes), then: name length, "machine", version (4), length (8).
            try expectRefused("section 'machine' claims 1099511627776 bytes, more than the 64 MiB limit") { bytes in
                bytes.replaceSubrange(32..<40, with: withUnsafeBytes(of: (UInt64(1) << 40).littleEndian, Array.init))
            }
        }

        @Test func wrongSectionLength() throws {
            try expectRefused("CRC mismatch in section 'machine'") { bytes in
                let length = bytes[32..<40].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * $1.offset) }
                bytes.replaceSubrange(32..<40, with: withUnsafeBytes(of: (length + 4).littleEndian, Array.init))
            }
        }

        @Test("a target of another shape is refused, naming the difference")
        func configurationMismatch() throws {
            try expectRefused("incoming migration refused: the incoming VM has 1 vCPUs, this one has 2 (start it with -smp 1)",
                              options: ["-m", "16", "-smp", "2"])
            try expectRefused("incoming migration refused: RAM block pc.ram is 16 MiB in the incoming VM and 32 MiB here (start it with the same -m)",
                              options: ["-m", "32"])
        }
    }
}
