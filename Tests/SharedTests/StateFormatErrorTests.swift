import Testing

@testable import Shared

@Suite struct StateFormatErrorTests {
    typealias Fixture = StateFormatFixture

    static let small = [
        StateSection(name: "cpu.0", version: 3, payload: [1, 2, 3, 4, 5]),
        StateSection(name: "pit", version: 1, payload: []),
    ]

    /// Reads the whole stream and returns the error it ended with (nil: read cleanly).
    static func failure(_ bytes: [UInt8]) -> StateFormatError? {
        do {
            _ = try Fixture.readAll(bytes)
            return nil
        } catch let error as StateFormatError {
            return error
        } catch {
            Issue.record("unexpected error type: \(error)")
            return nil
        }
    }

    static func header(version: UInt32 = 1) -> [UInt8] { StateFormat.header(version: version) }

    @Test func everyPrefixIsTruncated() throws {
        let bytes = try Fixture.encode(Self.small)
        #expect(Self.failure(bytes) == nil)
        for length in 0..<bytes.count {
            let error = Self.failure(Array(bytes[..<length]))
            guard case .truncated = error else {
                Issue.record("prefix of \(length) bytes: \(String(describing: error))")
                continue
            }
        }
    }

    @Test func truncationMessagesSayWhere() throws {
        let bytes = try Fixture.encode(Self.small)
        #expect(Self.failure([])?.description == "state stream truncated in header (after 0 bytes)")
        #expect(Self.failure(Array(bytes[..<11]))?.description == "state stream truncated in header (after 11 bytes)")
        #expect(Self.failure(Array(bytes[..<20]))?.description == "state stream truncated in section header (after 20 bytes)")
        // 20 header + 1 + 5 name + 12 = 38: the payload starts here.
        #expect(Self.failure(Array(bytes[..<40]))?.description == "state stream truncated in payload of section 'cpu.0' (after 40 bytes)")
        #expect(Self.failure(Array(bytes[..<45]))?.description == "state stream truncated in CRC of section 'cpu.0' (after 45 bytes)")
    }

    @Test func badMagic() throws {
        var bytes = try Fixture.encode(Self.small)
        bytes[7] = UInt8(ascii: "X")
        #expect(Self.failure(bytes) == .badMagic)
        #expect(Self.failure(Array("hello".utf8)) == .badMagic)
        #expect(Self.failure(Array("{\"return\": {}}\n".utf8)) == .badMagic)
        #expect(StateFormatError.badMagic.description == "not a cprvmm state stream (bad magic)")
    }

    @Test func unknownVersion() throws {
        let bytes = Self.header(version: 7) + Fixture.endFrame(count: 0)
        let error = Self.failure(bytes)
        #expect(error == .unsupportedVersion(found: 7, supported: 1...1))
        #expect(error?.description == "state format version 7 is not supported (this cprvmm reads 1...1)")
        #expect(Self.failure(Self.header(version: 0) + Fixture.endFrame(count: 0)) == .unsupportedVersion(found: 0, supported: 1...1))
    }

    @Test func badHeaderCRC() throws {
        var bytes = try Fixture.encode(Self.small)
        bytes[19] ^= 0x01
        #expect(Self.failure(bytes) == .badHeaderCRC)
        // A corrupt version field reads as corruption, not as an unknown version.
        bytes = try Fixture.encode(Self.small)
        bytes[8] = 2
        #expect(Self.failure(bytes) == .badHeaderCRC)
        #expect(StateFormatError.badHeaderCRC.description == "CRC mismatch in the state stream header: the state is corrupt")
    }

    @Test func unknownHeaderFlags() {
        let bytes = StateFormat.header(version: 1, flags: 4) + Fixture.endFrame(count: 0)
        #expect(Self.failure(bytes) == .malformed("state stream header has unknown flags 0x4"))
    }

    @Test func flippedPayloadBitNamesTheSection() throws {
        var bytes = try Fixture.encode(Self.small)
        bytes[40] ^= 0x10  // inside cpu.0's payload
        let error = Self.failure(bytes)
        #expect(error == .badCRC(section: "cpu.0"))
        #expect(error?.description == "CRC mismatch in section 'cpu.0': the state is corrupt")
    }

    @Test func everySingleBitFlipIsAnError() throws {
        let bytes = try Fixture.encode(Self.small)
        for index in bytes.indices {
            for bit in 0..<8 {
                var corrupt = bytes
                corrupt[index] ^= 1 << bit
                if Self.failure(corrupt) == nil { Issue.record("flipping bit \(bit) of byte \(index) went unnoticed") }
            }
        }
    }

    @Test func absurdLengthIsRefusedBeforeAllocating() throws {
        let huge: UInt64 = 1 << 62
        let bytes = Self.header() + Fixture.frame(nameBytes: Array("ram.0".utf8), version: 1, length: huge, payload: [])
        let error = Self.failure(bytes)
        #expect(error == .sectionTooLarge(section: "ram.0", size: huge, limit: 64 << 20))
        #expect(error?.description == "section 'ram.0' claims 4611686018427387904 bytes, more than the 64 MiB limit")

        let reader = try StateReader(source: MemorySource(bytes))
        var called = false
        #expect(throws: StateFormatError.sectionTooLarge(section: "ram.0", size: huge, limit: 64 << 20)) {
            _ = try reader.nextSection { _, _, _ in
                called = true
                return UnsafeMutableRawBufferPointer(start: nil, count: 0)
            }
        }
        #expect(!called)
        // Just over the limit is refused too; exactly the limit is allowed (it would be truncated here).
        let over = Self.header() + Fixture.frame(nameBytes: Array("x".utf8), version: 1, length: (64 << 20) + 1, payload: [])
        #expect(Self.failure(over) == .sectionTooLarge(section: "x", size: (64 << 20) + 1, limit: 64 << 20))
        let exact = Self.header() + Fixture.frame(nameBytes: Array("x".utf8), version: 1, length: 64 << 20, payload: [])
        guard case .truncated = Self.failure(exact) else {
            Issue.record("64 MiB exactly should pass the size check")
            return
        }
    }

    @Test func writerRefusesOversizedPayload() throws {
        let writer = try StateWriter(sink: MemorySink())
        // Never touched: the size check comes first, so the pages are never faulted in.
        let big = UnsafeMutableRawBufferPointer.allocate(byteCount: (64 << 20) + 1, alignment: 4096)
        defer { big.deallocate() }
        #expect(throws: StateFormatError.sectionTooLarge(section: "ram", size: (64 << 20) + 1, limit: 64 << 20)) {
            try writer.writeSection("ram", version: 1, payload: UnsafeRawBufferPointer(big))
        }
    }

    @Test(arguments: ["", "CPU", "a b", "cpu/0", "é", "end", String(repeating: "a", count: 33)])
    func writerRefusesBadSectionName(name: String) throws {
        let writer = try StateWriter(sink: MemorySink())
        #expect(throws: StateFormatError.badSectionName) { try writer.writeSection(name, version: 1, payload: []) }
    }

    @Test func writerAcceptsEdgeNames() throws {
        let names = ["a", "0", ".", "-", "_", "virtio-net.0_rx", String(repeating: "z", count: 32)]
        let sections = names.map { StateSection(name: $0, version: 1, payload: [7]) }
        #expect(try Fixture.readAll(try Fixture.encode(sections)) == sections)
    }

    @Test func readerRefusesBadSectionName() {
        for name in [[], Array("CPU".utf8), Array("a b".utf8), [0xC3, 0xA9], [UInt8](repeating: 0x61, count: 33)] as [[UInt8]] {
            let bytes = Self.header() + Fixture.frame(nameBytes: name, version: 1, length: 0, payload: []) + Fixture.endFrame(count: 1)
            #expect(Self.failure(bytes) == .badSectionName, "name \(name)")
        }
        #expect(StateFormatError.badSectionName.description.hasPrefix("invalid section name"))
    }

    @Test func endCountMismatch() {
        let bytes = Self.header() + Fixture.frame("cpu.0", payload: [1]) + Fixture.endFrame(count: 2)
        let error = Self.failure(bytes)
        #expect(error == .badEnd("the end section counts 2 sections but 1 were read"))
        #expect(error?.description == "bad end of state stream: the end section counts 2 sections but 1 were read")
    }

    @Test func endSectionShape() {
        #expect(
            Self.failure(Self.header() + Fixture.endFrame(count: 0, version: 2)) == .badEnd("the end section has version 2 instead of 1"))
        let nineBytes = Self.header() + Fixture.frame("end", payload: [UInt8](repeating: 0, count: 9))
        #expect(Self.failure(nineBytes) == .badEnd("the end section has a 9-byte payload instead of 8"))
    }

    @Test func trailingBytesAfterEnd() throws {
        let bytes = try Fixture.encode(Self.small)
        #expect(Self.failure(bytes + [0]) == .badEnd("data follows the end section at byte \(bytes.count)"))
        #expect(Self.failure(bytes + (try Fixture.encode(Self.small))) == .badEnd("data follows the end section at byte \(bytes.count)"))
    }

    @Test func errorsAreSticky() throws {
        var bytes = try Fixture.encode(Self.small)
        bytes[40] ^= 1
        let reader = try StateReader(source: MemorySource(bytes))
        #expect(throws: StateFormatError.badCRC(section: "cpu.0")) { try reader.nextSection() }
        #expect(throws: StateFormatError.badCRC(section: "cpu.0")) { try reader.nextSection() }
    }

    @Test func destinationErrorsAndWrongSizes() throws {
        struct Refused: Error, Equatable {}
        let bytes = try Fixture.encode(Self.small)
        let reader = try StateReader(source: MemorySource(bytes))
        #expect(throws: Refused()) { try reader.nextSection { _, _, _ in throw Refused() } }
        #expect(throws: Refused()) { try reader.nextSection() }

        let other = try StateReader(source: MemorySource(bytes))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 8)
        defer { buffer.deallocate() }
        #expect(throws: StateFormatError.malformed("section 'cpu.0': destination buffer has 16 bytes for a payload of 5 bytes")) {
            try other.nextSection { _, _, _ in buffer }
        }
    }

    @Test func writerMisuse() throws {
        let writer = try StateWriter(sink: MemorySink())
        try writer.finish()
        #expect(throws: StateFormatError.badEnd("section 'cpu.0' written after the end section")) {
            try writer.writeSection("cpu.0", version: 1, payload: [])
        }
        #expect(throws: StateFormatError.badEnd("the end section was already written")) { try writer.finish() }
    }

    @Test func writerStopsAfterSinkFailure() throws {
        final class FailingSink: ByteSink {
            var budget: Int
            init(budget: Int) { self.budget = budget }
            func write(_ bytes: UnsafeRawBufferPointer) throws {
                guard bytes.count <= budget else { throw StateFormatError.io("write: no space left on device") }
                budget -= bytes.count
            }
        }
        let writer = try StateWriter(sink: FailingSink(budget: 30))
        #expect(throws: StateFormatError.io("write: no space left on device")) {
            try writer.writeSection("cpu.0", version: 1, payload: [UInt8](repeating: 1, count: 100))
        }
        #expect(throws: StateFormatError.io("the stream is incomplete after an earlier write error")) {
            try writer.writeSection("pit", version: 1, payload: [])
        }
        #expect(throws: StateFormatError.io("the stream is incomplete after an earlier write error")) { try writer.finish() }
    }

    @Test func fileDescriptorErrors() throws {
        #expect(throws: StateFormatError.io("write: bad file descriptor")) {
            try [UInt8](repeating: 0, count: 4).withUnsafeBytes { try FileDescriptorSink(fd: -1).write($0) }
        }
        var buffer = [UInt8](repeating: 0, count: 4)
        #expect(throws: StateFormatError.io("read: bad file descriptor")) {
            _ = try buffer.withUnsafeMutableBytes { try FileDescriptorSource(fd: -1).read(into: $0) }
        }
        #expect(StateFormatError.io("write: broken pipe").description == "I/O error on state stream: write: broken pipe")
    }
}
