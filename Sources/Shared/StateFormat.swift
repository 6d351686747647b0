/// The framed, versioned stream that VM state is saved to and loaded from (migration and
/// live update). Byte layout and error messages: docs/state-format.md.
///
///     header   "CPRVMMST"  format version u32  flags u32 (0)  CRC32 of the previous 16 bytes
///     section  name length u8 (1...32)  name  version u32  payload length u64  payload  CRC32
///     ...
///     end      a section named "end", version 1, payload: the number of sections before it (u64)
///
/// All integers are little-endian. A section's CRC covers its bytes from the name length to
/// the end of the payload. The 20-byte header keeps this layout in every format version, so
/// any reader can tell a newer stream from a corrupt one.
public enum StateFormat {
    public static let magic: [UInt8] = Array("CPRVMMST".utf8)
    public static let currentVersion: UInt32 = 1
    /// A reader accepts its own format version and the previous one (docs/platform.md, process
    /// model). When version 2 arrives this becomes `1...2` and `StateReader` keeps a
    /// branch for each layout difference.
    public static let supportedVersions: ClosedRange<UInt32> = 1...currentVersion
    /// Larger payloads must be split into several sections (guest RAM goes in chunks), so a
    /// reader never trusts a corrupt length with an allocation bigger than this.
    public static let maxSectionSize: UInt64 = 64 << 20

    static let headerSize = 20
    static let maxSectionNameLength = 32
    static let endSectionName = "end"
    static let endSectionVersion: UInt32 = 1
    static let endPayloadSize = 8

    /// 1...32 bytes of `a-z`, `0-9`, `.`, `-`, `_`: readable in error messages and logs, and
    /// safe to print without escaping.
    static func isValidSectionName(_ name: String) -> Bool {
        let utf8 = name.utf8
        guard (1...maxSectionNameLength).contains(utf8.count) else { return false }
        return utf8.allSatisfy(isSectionNameByte)
    }

    static func isSectionNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_"):
            return true
        default:
            return false
        }
    }

    /// The 20 header bytes for `version` (tests build headers of other versions with it).
    static func header(version: UInt32, flags: UInt32 = 0) -> [UInt8] {
        var bytes = magic
        appendLittleEndian(version, to: &bytes)
        appendLittleEndian(flags, to: &bytes)
        appendLittleEndian(CRC32.checksum(bytes), to: &bytes)
        return bytes
    }

    static func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        var littleEndian = value.littleEndian
        withUnsafeBytes(of: &littleEndian) { bytes.append(contentsOf: $0) }
    }

    static func loadLittleEndian<T: FixedWidthInteger>(_ type: T.Type, from bytes: [UInt8], at offset: Int) -> T {
        // Callers pass offsets inside `bytes`; loadUnaligned because offsets are arbitrary.
        bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }
}

/// One section as read back: the component's name, its own version, and its payload.
public struct StateSection: Equatable, Sendable {
    public let name: String
    public let version: UInt32
    public let payload: [UInt8]

    public init(name: String, version: UInt32, payload: [UInt8]) {
        self.name = name
        self.version = version
        self.payload = payload
    }
}
