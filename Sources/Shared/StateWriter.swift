/// Writes a state stream: the header on init, one frame per `writeSection`, and the end
/// section on `finish()`. A stream without its end section is refused by the reader, so a
/// save that fails halfway can never be loaded as if it were complete.
public final class StateWriter {
    private let sink: ByteSink
    private var sectionCount: UInt64 = 0
    private var finished = false
    /// Set when the sink failed mid-frame: what follows would be misframed, so refuse it.
    private var broken = false

    public private(set) var bytesWritten: UInt64 = 0

    public init(sink: ByteSink) throws {
        self.sink = sink
        let header = StateFormat.header(version: StateFormat.currentVersion)
        try header.withUnsafeBytes { try emit($0) }
    }

    /// Writes one section. `name` is 1...32 bytes of a-z, 0-9, '.', '-', '_' and not "end";
    /// `payload` is at most `StateFormat.maxSectionSize` bytes (split bigger state into chunks).
    public func writeSection(_ name: String, version: UInt32, payload: UnsafeRawBufferPointer) throws {
        guard StateFormat.isValidSectionName(name), name != StateFormat.endSectionName else {
            throw StateFormatError.badSectionName
        }
        guard !finished else { throw StateFormatError.badEnd("section '\(name)' written after the end section") }
        try checkNotBroken()
        try writeFrame(name, version: version, payload: payload)
        sectionCount += 1
    }

    public func writeSection(_ name: String, version: UInt32, payload: [UInt8]) throws {
        try payload.withUnsafeBytes { try writeSection(name, version: version, payload: $0) }
    }

    /// Writes the end section. The stream is complete once this returns; closing or syncing
    /// the underlying file is the caller's.
    public func finish() throws {
        guard !finished else { throw StateFormatError.badEnd("the end section was already written") }
        try checkNotBroken()
        var count: [UInt8] = []
        StateFormat.appendLittleEndian(sectionCount, to: &count)
        try count.withUnsafeBytes {
            try writeFrame(StateFormat.endSectionName, version: StateFormat.endSectionVersion, payload: $0)
        }
        finished = true
    }

    private func writeFrame(_ name: String, version: UInt32, payload: UnsafeRawBufferPointer) throws {
        let size = UInt64(payload.count)
        guard size <= StateFormat.maxSectionSize else {
            throw StateFormatError.sectionTooLarge(section: name, size: size, limit: StateFormat.maxSectionSize)
        }
        var frameHeader: [UInt8] = []
        frameHeader.reserveCapacity(1 + StateFormat.maxSectionNameLength + 12)
        frameHeader.append(UInt8(name.utf8.count))
        frameHeader.append(contentsOf: name.utf8)
        StateFormat.appendLittleEndian(version, to: &frameHeader)
        StateFormat.appendLittleEndian(size, to: &frameHeader)

        var crc = CRC32()
        crc.update(frameHeader)
        crc.update(payload)
        var trailer: [UInt8] = []
        StateFormat.appendLittleEndian(crc.value, to: &trailer)

        try frameHeader.withUnsafeBytes { try emit($0) }
        try emit(payload)
        try trailer.withUnsafeBytes { try emit($0) }
    }

    private func checkNotBroken() throws {
        guard !broken else { throw StateFormatError.io("the stream is incomplete after an earlier write error") }
    }

    private func emit(_ bytes: UnsafeRawBufferPointer) throws {
        guard !bytes.isEmpty else { return }
        do {
            try sink.write(bytes)
        } catch {
            broken = true
            throw error
        }
        bytesWritten += UInt64(bytes.count)
    }
}
