/// Reads a state stream written by `StateWriter`, checking every frame as it goes: each
/// section's name, declared length (before anything is allocated for it) and CRC, and at the
/// end the section count and that nothing follows. Any malformed input is a
/// `StateFormatError`; after an error every later call throws the same error, because the
/// position in the stream is no longer known.
///
/// The end-of-stream check reads until EOF, so over a pipe or socket the writer must close
/// its end after `finish()`.
public final class StateReader {
    private let source: ByteSource
    /// The stream's format version, one of `StateFormat.supportedVersions`. Every version so
    /// far frames sections identically; a future layout change branches on this.
    public let formatVersion: UInt32
    public private(set) var bytesRead: UInt64 = 0
    private var sectionCount: UInt64 = 0
    private var atEnd = false
    private var failure: Error?

    /// A section whose header has been read and checked, and whose payload comes next.
    private struct Frame {
        let name: String
        let version: UInt32
        let length: Int
        var crc: CRC32
    }

    public init(source: ByteSource) throws {
        self.source = source
        var header = [UInt8](repeating: 0, count: StateFormat.headerSize)
        let got = try header.withUnsafeMutableBytes { try StateReader.fill($0, from: source) }
        bytesRead = UInt64(got)
        let magicCount = StateFormat.magic.count
        // A short file that does not even start like a state stream is "not a state stream".
        guard header[0..<min(got, magicCount)].elementsEqual(StateFormat.magic.prefix(got)) else {
            throw StateFormatError.badMagic
        }
        guard got == StateFormat.headerSize else { throw StateFormatError.truncated("header (after \(got) bytes)") }
        // The header layout is the same in every format version, so its CRC is checked first:
        // a corrupt version field reads as corruption, not as an unknown version.
        let storedCRC = StateFormat.loadLittleEndian(UInt32.self, from: header, at: 16)
        guard CRC32.checksum(Array(header[0..<16])) == storedCRC else { throw StateFormatError.badHeaderCRC }
        let version = StateFormat.loadLittleEndian(UInt32.self, from: header, at: 8)
        guard StateFormat.supportedVersions.contains(version) else {
            throw StateFormatError.unsupportedVersion(found: version, supported: StateFormat.supportedVersions)
        }
        let flags = StateFormat.loadLittleEndian(UInt32.self, from: header, at: 12)
        guard flags == 0 else {
            throw StateFormatError.malformed("state stream header has unknown flags 0x\(String(flags, radix: 16))")
        }
        formatVersion = version
    }

    /// The next section, or nil after the end section (whose count is checked). Never allocates more than maxSectionSize for one payload, and checks the length before allocating.
    public func nextSection() throws -> StateSection? {
        try guarded {
            guard var frame = try beginFrame() else { return nil }
            let payload = try [UInt8](unsafeUninitializedCapacity: frame.length) { buffer, initialized in
                try readPayload(into: UnsafeMutableRawBufferPointer(buffer), frame: &frame)
                initialized = frame.length
            }
            try endFrame(frame)
            return StateSection(name: frame.name, version: frame.version, payload: payload)
        }
    }

    /// Reads a section's payload straight into caller memory (for guest RAM chunks: no copy through [UInt8]): returns name, version and payload length, and calls `destination(length)` to get a buffer of exactly that length to fill, then verifies the CRC.
    ///
    /// `destination` is called only after the name and length are checked, and may throw to
    /// refuse the section (unknown name, chunk outside guest RAM). If this throws after
    /// `destination` returned, the buffer holds unverified bytes and the load has failed.
    public func nextSection(
        into destination: (_ name: String, _ version: UInt32, _ length: Int) throws -> UnsafeMutableRawBufferPointer
    ) throws -> (name: String, version: UInt32, length: Int)? {
        try guarded {
            guard var frame = try beginFrame() else { return nil }
            let buffer = try destination(frame.name, frame.version, frame.length)
            guard buffer.count == frame.length else {
                throw StateFormatError.malformed(
                    "section '\(frame.name)': destination buffer has \(buffer.count) bytes for a payload of \(frame.length) bytes")
            }
            try readPayload(into: buffer, frame: &frame)
            try endFrame(frame)
            return (frame.name, frame.version, frame.length)
        }
    }

    /// Runs one step of reading; after a failure the stream position is lost, so remember it.
    private func guarded<T>(_ body: () throws -> T?) throws -> T? {
        if let failure { throw failure }
        if atEnd { return nil }
        do {
            return try body()
        } catch {
            failure = error
            throw error
        }
    }

    /// Reads and checks a section header. Handles the end section completely (payload, CRC,
    /// count, nothing after it) and returns nil for it.
    private func beginFrame() throws -> Frame? {
        var nameLength: [UInt8] = [0]
        try readExactly(&nameLength, what: "section header")
        let count = Int(nameLength[0])
        guard (1...StateFormat.maxSectionNameLength).contains(count) else { throw StateFormatError.badSectionName }
        var header = [UInt8](repeating: 0, count: count + 12)
        try readExactly(&header, what: "section header")
        guard header[0..<count].allSatisfy(StateFormat.isSectionNameByte) else { throw StateFormatError.badSectionName }
        let name = String(decoding: header[0..<count], as: UTF8.self)
        let version = StateFormat.loadLittleEndian(UInt32.self, from: header, at: count)
        let length = StateFormat.loadLittleEndian(UInt64.self, from: header, at: count + 4)
        var crc = CRC32()
        crc.update(nameLength)
        crc.update(header)

        if name == StateFormat.endSectionName {
            guard length == UInt64(StateFormat.endPayloadSize) else {
                throw StateFormatError.badEnd("the end section has a \(length)-byte payload instead of \(StateFormat.endPayloadSize)")
            }
            var frame = Frame(name: name, version: version, length: StateFormat.endPayloadSize, crc: crc)
            var payload = [UInt8](repeating: 0, count: StateFormat.endPayloadSize)
            try payload.withUnsafeMutableBytes { try readPayload(into: $0, frame: &frame) }
            try checkCRC(frame)
            try checkEnd(version: version, payload: payload)
            return nil
        }
        guard length <= StateFormat.maxSectionSize else {
            throw StateFormatError.sectionTooLarge(section: name, size: length, limit: StateFormat.maxSectionSize)
        }
        return Frame(name: name, version: version, length: Int(length), crc: crc)
    }

    private func readPayload(into buffer: UnsafeMutableRawBufferPointer, frame: inout Frame) throws {
        var offset = 0
        while offset < buffer.count {
            // The unfilled tail of the caller's buffer.
            let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[offset...])
            let got = try source.read(into: chunk)
            guard got > 0 else { throw StateFormatError.truncated("payload of section '\(frame.name)' (after \(bytesRead) bytes)") }
            // Checksummed while still in cache; `got` <= chunk.count by the ByteSource contract.
            frame.crc.update(UnsafeRawBufferPointer(rebasing: chunk[..<min(got, chunk.count)]))
            offset += got
            bytesRead += UInt64(got)
        }
    }

    private func endFrame(_ frame: Frame) throws {
        try checkCRC(frame)
        sectionCount += 1
    }

    private func checkCRC(_ frame: Frame) throws {
        var stored: [UInt8] = [0, 0, 0, 0]
        try readExactly(&stored, what: "CRC of section '\(frame.name)'")
        guard StateFormat.loadLittleEndian(UInt32.self, from: stored, at: 0) == frame.crc.value else {
            throw StateFormatError.badCRC(section: frame.name)
        }
    }

    private func checkEnd(version: UInt32, payload: [UInt8]) throws {
        guard version == StateFormat.endSectionVersion else {
            throw StateFormatError.badEnd("the end section has version \(version) instead of \(StateFormat.endSectionVersion)")
        }
        let declared = StateFormat.loadLittleEndian(UInt64.self, from: payload, at: 0)
        guard declared == sectionCount else {
            throw StateFormatError.badEnd("the end section counts \(declared) sections but \(sectionCount) were read")
        }
        var probe: [UInt8] = [0]
        let extra = try probe.withUnsafeMutableBytes { try source.read(into: $0) }
        guard extra == 0 else { throw StateFormatError.badEnd("data follows the end section at byte \(bytesRead)") }
        atEnd = true
    }

    private func readExactly(_ bytes: inout [UInt8], what: @autoclosure () -> String) throws {
        let got = try bytes.withUnsafeMutableBytes { try StateReader.fill($0, from: source) }
        bytesRead += UInt64(got)
        guard got == bytes.count else { throw StateFormatError.truncated("\(what()) (after \(bytesRead) bytes)") }
    }

    /// Reads until `buffer` is full or the stream ends; returns how many bytes it got.
    private static func fill(_ buffer: UnsafeMutableRawBufferPointer, from source: ByteSource) throws -> Int {
        var offset = 0
        while offset < buffer.count {
            // The unfilled tail of `buffer`.
            let got = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[offset...]))
            if got <= 0 { break }
            offset += got
        }
        return min(offset, buffer.count)
    }
}
