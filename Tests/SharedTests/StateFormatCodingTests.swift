import Testing

@testable import Shared

/// Shaped like a KVM struct (kvm_regs is 18 u64s): trivial, saved by its in-memory bytes.
struct FakeRegisters: Equatable {
    var rax: UInt64, rbx: UInt64, rcx: UInt64, rdx: UInt64
    var rsi: UInt64, rdi: UInt64, rsp: UInt64, rbp: UInt64
    var r8: UInt64, r9: UInt64, r10: UInt64, r11: UInt64
    var r12: UInt64, r13: UInt64, r14: UInt64, r15: UInt64
    var rip: UInt64, rflags: UInt64
}

@Suite struct StateFormatCodingTests {
    static let registers = FakeRegisters(
        rax: 1, rbx: 2, rcx: 3, rdx: 4, rsi: 5, rdi: 6, rsp: 0x7fff_f000, rbp: 8,
        r8: 9, r9: 10, r10: 11, r11: 12, r12: 13, r13: 14, r14: 15, r15: .max,
        rip: 0xFFFF_FFF0, rflags: 0x2)

    @Test func roundTripOfEveryKind() throws {
        var encoder = StateEncoder()
        encoder.u8(0xAB)
        encoder.u16(0x1234)
        encoder.u32(0xDEAD_BEEF)
        encoder.u64(0x0102_0304_0506_0708)
        encoder.i64(-2)
        encoder.bool(true)
        encoder.bool(false)
        encoder.bytes([9, 8, 7])
        ([6, 5] as [UInt8]).withUnsafeBytes { encoder.bytes($0) }
        encoder.lengthPrefixedBytes([1, 2, 3, 4])
        encoder.string("vm-1 ✓")
        encoder.raw(Self.registers)

        var decoder = StateDecoder(encoder.bytes, section: "test")
        #expect(try decoder.u8() == 0xAB)
        #expect(try decoder.u16() == 0x1234)
        #expect(try decoder.u32() == 0xDEAD_BEEF)
        #expect(try decoder.u64() == 0x0102_0304_0506_0708)
        #expect(try decoder.i64() == -2)
        #expect(try decoder.bool() == true)
        #expect(try decoder.bool() == false)
        #expect(try decoder.bytes(count: 3) == [9, 8, 7])
        #expect(try decoder.bytes(count: 2) == [6, 5])
        #expect(try decoder.lengthPrefixedBytes(limit: 4) == [1, 2, 3, 4])
        #expect(try decoder.string(limit: 100) == "vm-1 ✓")
        #expect(try decoder.raw(FakeRegisters.self) == Self.registers)
        #expect(decoder.remaining == 0)
        try decoder.finish()
    }

    @Test func littleEndianOnTheWire() {
        var encoder = StateEncoder()
        encoder.u16(0x0102)
        encoder.u32(0x0304_0506)
        encoder.i64(-1)
        encoder.string("ab")
        #expect(encoder.bytes == [2, 1, 6, 5, 4, 3] + [UInt8](repeating: 0xFF, count: 8) + [2, 0, 0, 0, 0x61, 0x62])
    }

    @Test func rawAtAnUnalignedOffset() throws {
        var encoder = StateEncoder()
        encoder.u8(1)
        encoder.raw(Self.registers)
        #expect(encoder.bytes.count == 1 + 18 * 8)
        var decoder = StateDecoder(encoder.bytes, section: "cpu.0")
        _ = try decoder.u8()
        #expect(try decoder.raw(FakeRegisters.self) == Self.registers)
    }

    @Test func everyReadPastTheEndIsMalformed() {
        let reads: [(String, (inout StateDecoder) throws -> Void)] = [
            ("u8", { _ = try $0.u8() }),
            ("u16", { _ = try $0.u16() }),
            ("u32", { _ = try $0.u32() }),
            ("u64", { _ = try $0.u64() }),
            ("i64", { _ = try $0.i64() }),
            ("bool", { _ = try $0.bool() }),
            ("1 bytes", { _ = try $0.bytes(count: 1) }),
            ("length", { _ = try $0.lengthPrefixedBytes(limit: 10) }),
            ("length", { _ = try $0.string(limit: 10) }),
            ("FakeRegisters", { _ = try $0.raw(FakeRegisters.self) }),
        ]
        for (what, read) in reads {
            var decoder = StateDecoder([], section: "x")
            #expect(throws: StateFormatError.malformed("section 'x': truncated reading \(what) at offset 0")) { try read(&decoder) }
            #expect(decoder.offset == 0)
        }
    }

    @Test func partialValueMessageNamesOffset() throws {
        var decoder = StateDecoder([UInt8](repeating: 0, count: 14), section: "cpu.0")
        _ = try decoder.u64()
        _ = try decoder.u32()
        let error = #expect(throws: StateFormatError.self) { try decoder.u32() }
        #expect(error?.description == "section 'cpu.0': truncated reading u32 at offset 12")
        #expect(decoder.remaining == 2)
    }

    @Test func lengthPrefixedFieldsCheckTheirLength() throws {
        var encoder = StateEncoder()
        encoder.lengthPrefixedBytes([1, 2, 3])
        var decoder = StateDecoder(encoder.bytes, section: "s")
        #expect(throws: StateFormatError.malformed("section 's': length 3 at offset 0 is more than the limit of 2 bytes")) {
            try decoder.lengthPrefixedBytes(limit: 2)
        }
        // A length claiming more than the payload holds.
        var lying = StateDecoder([0xFF, 0xFF, 0xFF, 0xFF, 1], section: "s")
        #expect(throws: StateFormatError.malformed("section 's': truncated reading 4294967295 bytes at offset 4")) {
            try lying.lengthPrefixedBytes(limit: .max)
        }
        var negative = StateDecoder([1], section: "s")
        #expect(throws: StateFormatError.malformed("section 's': negative byte count -1 at offset 0")) { try negative.bytes(count: -1) }
    }

    @Test func invalidUTF8AndBool() throws {
        var text = StateDecoder([2, 0, 0, 0, 0xC3, 0x28], section: "s")
        #expect(throws: StateFormatError.malformed("section 's': invalid UTF-8 in string at offset 0")) { try text.string(limit: 10) }
        var flag = StateDecoder([0, 2], section: "s")
        #expect(try flag.bool() == false)
        #expect(throws: StateFormatError.malformed("section 's': invalid bool value 2 at offset 1")) { try flag.bool() }
    }

    @Test func trailingBytesAreMalformed() throws {
        var decoder = StateDecoder(StateSection(name: "x", version: 1, payload: [1, 2, 3, 4]))
        _ = try decoder.u8()
        let error = #expect(throws: StateFormatError.self) { try decoder.finish() }
        #expect(error?.description == "section 'x': 3 unexpected trailing bytes")
    }

    @Test func sectionPayloadThroughTheStream() throws {
        var encoder = StateEncoder()
        encoder.raw(Self.registers)
        encoder.string("running")
        let sink = MemorySink()
        let writer = try StateWriter(sink: sink)
        try writer.writeSection("cpu.0", version: 2, payload: encoder.bytes)
        try writer.finish()

        let reader = try StateReader(source: MemorySource(sink.bytes))
        var decoder = StateDecoder(try #require(try reader.nextSection()))
        #expect(try decoder.raw(FakeRegisters.self) == Self.registers)
        #expect(try decoder.string(limit: 64) == "running")
        try decoder.finish()
    }
}
