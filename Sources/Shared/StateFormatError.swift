/// Everything that can go wrong writing or reading a state stream. Malformed input always
/// ends up here, never in a crash. Each description is one sentence an operator can act on
/// (the table in docs/state-format.md lists them).
public enum StateFormatError: Error, Equatable, CustomStringConvertible {
    /// The stream ended early; the string says where: "header of section 'cpu.0' (after 45 bytes)".
    case truncated(String)
    case badMagic
    case unsupportedVersion(found: UInt32, supported: ClosedRange<UInt32>)
    case badHeaderCRC
    case badCRC(section: String)
    /// A name that is not 1...32 bytes of a-z, 0-9, '.', '-', '_' (or "end", when writing).
    case badSectionName
    case sectionTooLarge(section: String, size: UInt64, limit: UInt64)
    /// The end section is missing its count, disagrees with the sections read, or is followed by data.
    case badEnd(String)
    /// A read or write on the underlying file failed: "write: Broken pipe".
    case io(String)
    /// A section's payload does not decode, or the header has flags this reader does not know.
    case malformed(String)

    public var description: String {
        switch self {
        case .truncated(let what):
            return "state stream truncated in \(what)"
        case .badMagic:
            return "not a cprvmm state stream (bad magic)"
        case .unsupportedVersion(let found, let supported):
            return "state format version \(found) is not supported (this cprvmm reads \(supported.lowerBound)...\(supported.upperBound))"
        case .badHeaderCRC:
            return "CRC mismatch in the state stream header: the state is corrupt"
        case .badCRC(let section):
            return "CRC mismatch in section '\(section)': the state is corrupt"
        case .badSectionName:
            return "invalid section name: a name is 1 to 32 characters of a-z, 0-9, '.', '-' and '_'"
        case .sectionTooLarge(let section, let size, let limit):
            return "section '\(section)' claims \(size) bytes, more than the \(StateFormatError.formatSize(limit)) limit"
        case .badEnd(let what):
            return "bad end of state stream: \(what)"
        case .io(let what):
            return "I/O error on state stream: \(what)"
        case .malformed(let what):
            return what
        }
    }

    /// "64 MiB" for whole mebibytes, else the byte count.
    static func formatSize(_ bytes: UInt64) -> String {
        bytes != 0 && bytes % (1 << 20) == 0 ? "\(bytes >> 20) MiB" : "\(bytes) bytes"
    }
}
