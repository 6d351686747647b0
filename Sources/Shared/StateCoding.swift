/// Builds a component section's payload: little-endian integers, byte strings, and the raw
/// bytes of kernel structs (`kvm_regs`, `kvm_sregs`, ...) that are saved as KVM hands them out.
public struct StateEncoder {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func u8(_ value: UInt8) { bytes.append(value) }
    public mutating func u16(_ value: UInt16) { StateFormat.appendLittleEndian(value, to: &bytes) }
    public mutating func u32(_ value: UInt32) { StateFormat.appendLittleEndian(value, to: &bytes) }
    public mutating func u64(_ value: UInt64) { StateFormat.appendLittleEndian(value, to: &bytes) }
    public mutating func i64(_ value: Int64) { StateFormat.appendLittleEndian(value, to: &bytes) }
    public mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }

    /// Raw bytes, no length: the reader knows how many to expect.
    public mutating func bytes(_ raw: UnsafeRawBufferPointer) { bytes.append(contentsOf: raw) }
    public mutating func bytes(_ raw: [UInt8]) { bytes.append(contentsOf: raw) }

    /// A u32 length, then the bytes.
    public mutating func lengthPrefixedBytes(_ value: [UInt8]) {
        precondition(value.count <= Int(UInt32.max), "a length-prefixed field holds at most 4 GiB")
        u32(UInt32(value.count))
        bytes.append(contentsOf: value)
    }

    /// A u32 length, then the UTF-8 bytes.
    public mutating func string(_ value: String) {
        lengthPrefixedBytes(Array(value.utf8))
    }

    /// The in-memory bytes of a trivial C struct such as `kvm_regs` (MemoryLayout<T>.size
    /// bytes, padding included), to be read back by `StateDecoder.raw` on the same architecture.
    public mutating func raw<T>(_ value: T) {
        precondition(_isPOD(T.self), "raw() encodes only trivial types (C structs, integers)")
        withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) }
    }
}

/// Reads a payload written by `StateEncoder`. Every read is bounds-checked: running out of
/// bytes, an oversized length or bad UTF-8 is `StateFormatError.malformed` naming the section
/// and offset, never a crash.
public struct StateDecoder {
    private let bytes: [UInt8]
    private let section: String
    /// Where the next read starts.
    public private(set) var offset = 0

    public init(_ bytes: [UInt8], section: String) {
        self.bytes = bytes
        self.section = section
    }

    public init(_ section: StateSection) {
        self.init(section.payload, section: section.name)
    }

    public var remaining: Int { bytes.count - offset }

    public mutating func u8() throws -> UInt8 { try integer(UInt8.self, "u8") }
    public mutating func u16() throws -> UInt16 { try integer(UInt16.self, "u16") }
    public mutating func u32() throws -> UInt32 { try integer(UInt32.self, "u32") }
    public mutating func u64() throws -> UInt64 { try integer(UInt64.self, "u64") }
    public mutating func i64() throws -> Int64 { try integer(Int64.self, "i64") }

    public mutating func bool() throws -> Bool {
        let at = offset
        switch try integer(UInt8.self, "bool") {
        case 0: return false
        case 1: return true
        case let value: throw malformed("invalid bool value \(value) at offset \(at)")
        }
    }

    public mutating func bytes(count: Int) throws -> [UInt8] {
        guard count >= 0 else { throw malformed("negative byte count \(count) at offset \(offset)") }
        try need(count, "\(count) bytes")
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    /// A u32 length, then that many bytes; a length above `limit` is refused before reading.
    public mutating func lengthPrefixedBytes(limit: Int) throws -> [UInt8] {
        let at = offset
        let count = try integer(UInt32.self, "length")
        guard UInt64(count) <= UInt64(max(limit, 0)) else {
            throw malformed("length \(count) at offset \(at) is more than the limit of \(limit) bytes")
        }
        return try bytes(count: Int(count))
    }

    /// A u32 length, then that many bytes of valid UTF-8.
    public mutating func string(limit: Int) throws -> String {
        let at = offset
        let utf8 = try lengthPrefixedBytes(limit: limit)
        guard let value = String(validating: utf8, as: UTF8.self) else {
            throw malformed("invalid UTF-8 in string at offset \(at)")
        }
        return value
    }

    /// MemoryLayout<T>.size bytes, as written by `StateEncoder.raw`.
    public mutating func raw<T>(_ type: T.Type) throws -> T {
        precondition(_isPOD(T.self), "raw() decodes only trivial types (C structs, integers)")
        let size = MemoryLayout<T>.size
        try need(size, "\(T.self)")
        defer { offset += size }
        // `need` checked offset + size <= count; T is trivial, so any bit pattern is a value.
        return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
    }

    /// Refuses leftover bytes: a payload longer than this reader expects is from a layout it
    /// does not understand, even when the section version matches.
    public func finish() throws {
        guard remaining == 0 else { throw malformed("\(remaining) unexpected trailing bytes") }
    }

    private mutating func integer<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws -> T {
        try need(MemoryLayout<T>.size, what)
        defer { offset += MemoryLayout<T>.size }
        return StateFormat.loadLittleEndian(T.self, from: bytes, at: offset)
    }

    private func need(_ count: Int, _ what: String) throws {
        guard count <= remaining else { throw malformed("truncated reading \(what) at offset \(offset)") }
    }

    private func malformed(_ what: String) -> StateFormatError {
        .malformed("section '\(section)': \(what)")
    }
}
