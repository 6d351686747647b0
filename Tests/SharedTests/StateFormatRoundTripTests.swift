import Foundation
import Glibc
import Testing

@testable import Shared

/// Helpers shared by the StateFormat suites.
enum StateFormatFixture {
    /// Three sections: a small one, an empty one, and `bigSize` bytes of patterned "RAM".
    static func sections(bigSize: Int = 3 << 20 | 12345) -> [StateSection] {
        var generator = SplitMix(seed: 42)
        var big = [UInt8](repeating: 0, count: bigSize)
        for i in 0..<bigSize where i % 4096 == 0 { big[i] = UInt8(truncatingIfNeeded: generator.next()) }
        for i in stride(from: 0, to: bigSize, by: 997) { big[i] ^= 0xA5 }
        return [
            StateSection(name: "cpu.0", version: 3, payload: Array("registers".utf8)),
            StateSection(name: "empty_section", version: 1, payload: []),
            StateSection(name: "ram-chunk.0", version: 1, payload: big),
        ]
    }

    static func write(_ sections: [StateSection], to sink: ByteSink) throws -> StateWriter {
        let writer = try StateWriter(sink: sink)
        for section in sections { try writer.writeSection(section.name, version: section.version, payload: section.payload) }
        try writer.finish()
        return writer
    }

    static func encode(_ sections: [StateSection]) throws -> [UInt8] {
        let sink = MemorySink()
        _ = try write(sections, to: sink)
        return sink.bytes
    }

    /// Every section up to the end, via nextSection().
    static func readAll(_ reader: StateReader) throws -> [StateSection] {
        var sections: [StateSection] = []
        while let section = try reader.nextSection() { sections.append(section) }
        return sections
    }

    static func readAll(_ bytes: [UInt8]) throws -> [StateSection] {
        try readAll(try StateReader(source: MemorySource(bytes)))
    }

    /// One section frame with a correct CRC, built by hand (for streams the writer refuses to make).
    static func frame(nameBytes: [UInt8], version: UInt32, length: UInt64, payload: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = [UInt8(truncatingIfNeeded: nameBytes.count)] + nameBytes
        StateFormat.appendLittleEndian(version, to: &bytes)
        StateFormat.appendLittleEndian(length, to: &bytes)
        bytes += payload
        StateFormat.appendLittleEndian(CRC32.checksum(bytes), to: &bytes)
        return bytes
    }

    static func frame(_ name: String, version: UInt32 = 1, payload: [UInt8]) -> [UInt8] {
        frame(nameBytes: Array(name.utf8), version: version, length: UInt64(payload.count), payload: payload)
    }

    static func endFrame(count: UInt64, version: UInt32 = 1) -> [UInt8] {
        var payload: [UInt8] = []
        StateFormat.appendLittleEndian(count, to: &payload)
        return frame("end", version: version, payload: payload)
    }
}

/// Hands out at most `step` bytes per read, as a pipe or socket may.
final class TrickleSource: ByteSource {
    private let bytes: [UInt8]
    private let step: Int
    private var offset = 0
    init(_ bytes: [UInt8], step: Int) {
        self.bytes = bytes
        self.step = step
    }
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let count = min(step, buffer.count, bytes.count - offset)
        for i in 0..<count { buffer[i] = bytes[offset + i] }
        offset += count
        return count
    }
}

@Suite struct StateFormatRoundTripTests {
    @Test func goldenBytes() throws {
        // Computed independently with Python's zlib.crc32 and struct.pack('<...'): if this
        // changes, old streams no longer load and the format version must go up.
        let expected =
            "435052564d4d53540100000000000000aac5b908056370752e30020000000300000000000000010203f0aad01c"
            + "03656e6401000000080000000000000001000000000000006638b245"
        let bytes = try StateFormatFixture.encode([StateSection(name: "cpu.0", version: 2, payload: [1, 2, 3])])
        #expect(bytes.map { String(format: "%02x", $0) }.joined() == expected)
    }

    @Test func memoryRoundTrip() throws {
        let sections = StateFormatFixture.sections()
        let sink = MemorySink()
        let writer = try StateFormatFixture.write(sections, to: sink)
        #expect(writer.bytesWritten == UInt64(sink.bytes.count))

        let reader = try StateReader(source: MemorySource(sink.bytes))
        #expect(reader.formatVersion == StateFormat.currentVersion)
        #expect(try StateFormatFixture.readAll(reader) == sections)
        #expect(reader.bytesRead == UInt64(sink.bytes.count))
        #expect(try reader.nextSection() == nil)  // stays at the end
    }

    @Test func emptyStream() throws {
        let bytes = try StateFormatFixture.encode([])
        #expect(bytes.count == 20 + 1 + 3 + 12 + 8 + 4)
        #expect(try StateFormatFixture.readAll(bytes) == [])
    }

    @Test func shortReadsAreReassembled() throws {
        let sections = StateFormatFixture.sections(bigSize: 10_000)
        let bytes = try StateFormatFixture.encode(sections)
        for step in [1, 3, 4096] {
            let reader = try StateReader(source: TrickleSource(bytes, step: step))
            #expect(try StateFormatFixture.readAll(reader) == sections)
        }
    }

    @Test(arguments: [false, true])
    func pipeRoundTrip(nonBlocking: Bool) throws {
        var fds: [Int32] = [-1, -1]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]) }
        if nonBlocking {
            for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        }
        let sections = StateFormatFixture.sections()
        let writeEnd = fds[1]
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var writerError: Error?
        nonisolated(unsafe) var written: UInt64 = 0
        // A real thread: the pipe holds 64 KiB, so writing blocks until the reader drains it.
        let thread = Thread {
            do {
                written = try StateFormatFixture.write(sections, to: FileDescriptorSink(fd: writeEnd)).bytesWritten
            } catch {
                writerError = error
            }
            close(writeEnd)
            done.signal()
        }
        thread.start()
        let reader = try StateReader(source: FileDescriptorSource(fd: fds[0]))
        let read = try StateFormatFixture.readAll(reader)
        done.wait()
        #expect(writerError == nil)
        #expect(read == sections)
        #expect(reader.bytesRead == written)
    }

    @Test func readIntoCallerMemory() throws {
        let sections = StateFormatFixture.sections()
        let reader = try StateReader(source: MemorySource(try StateFormatFixture.encode(sections)))
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 4096)
        defer { memory.deallocate() }
        var seen: [(String, UInt32, Int)] = []
        for expected in sections {
            var asked: (String, UInt32, Int)?
            let result = try reader.nextSection { name, version, length in
                asked = (name, version, length)
                return UnsafeMutableRawBufferPointer(rebasing: memory[0..<length])
            }
            let header = try #require(result)
            #expect(asked?.0 == expected.name && asked?.1 == expected.version && asked?.2 == expected.payload.count)
            #expect(Array(memory[0..<header.length]) == expected.payload)
            seen.append((header.name, header.version, header.length))
        }
        #expect(seen.map(\.0) == sections.map(\.name))
        var calledForEnd = false
        #expect(
            try reader.nextSection { _, _, _ in
                calledForEnd = true
                return memory
            } == nil)
        #expect(!calledForEnd)
    }

    @Test func mixedReadStyles() throws {
        let sections = StateFormatFixture.sections(bigSize: 5000)
        let reader = try StateReader(source: MemorySource(try StateFormatFixture.encode(sections)))
        #expect(try reader.nextSection() == sections[0])
        var buffer: [UInt8] = []
        let header = try reader.nextSection { _, _, length in
            buffer = [UInt8](repeating: 0xFF, count: length)
            return UnsafeMutableRawBufferPointer(start: nil, count: 0)
        }
        #expect(header?.name == "empty_section" && header?.length == 0 && buffer.isEmpty)
        #expect(try reader.nextSection() == sections[2])
        #expect(try reader.nextSection() == nil)
    }
}
