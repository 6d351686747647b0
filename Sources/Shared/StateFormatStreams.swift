import Glibc

/// Where a `StateWriter` puts bytes. `write` either writes all of `bytes` or throws.
public protocol ByteSink: AnyObject {
    func write(_ bytes: UnsafeRawBufferPointer) throws
}

/// Where a `StateReader` gets bytes.
public protocol ByteSource: AnyObject {
    /// Fills up to bytes.count; returns 0 only at end of stream.
    func read(into bytes: UnsafeMutableRawBufferPointer) throws -> Int
}

/// Collects the stream in memory (tests, and small streams such as the CPR state memfd).
public final class MemorySink: ByteSink {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        self.bytes.append(contentsOf: bytes)
    }
}

/// Serves a stream from memory.
public final class MemorySource: ByteSource {
    private let bytes: [UInt8]
    private var offset = 0

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let count = min(buffer.count, bytes.count - offset)
        guard count > 0 else { return 0 }
        bytes.withUnsafeBytes { source in
            // Both ranges were just clamped: count <= buffer.count and offset + count <= bytes.count.
            buffer.baseAddress!.copyMemory(from: source.baseAddress! + offset, byteCount: count)
        }
        offset += count
        return count
    }
}

/// Writes to a file descriptor it does not own (the caller closes it). Retries EINTR and
/// short writes, and waits with poll() when a non-blocking descriptor is full, so a
/// migration socket from the event loop works as well as a plain file.
/// Writing to a pipe or socket whose reader has gone raises SIGPIPE unless it is ignored
/// (the supervisor ignores it); the error is then "write: broken pipe".
public final class FileDescriptorSink: ByteSink {
    public let fd: Int32

    public init(fd: Int32) {
        self.fd = fd
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            // Writes the part of `bytes` not yet written; offset < count keeps it in bounds.
            let result = Glibc.write(fd, base + offset, bytes.count - offset)
            if result > 0 {
                offset += result
            } else if result == 0 {
                throw StateFormatError.io("write: no progress writing \(bytes.count - offset) bytes")
            } else {
                let code = errno
                switch code {
                case EINTR: continue
                case EAGAIN, EWOULDBLOCK: try waitForFileDescriptor(fd, events: Int16(POLLOUT), operation: "write")
                default: throw StateFormatError.io("write: \(describeErrno(code))")
                }
            }
        }
    }
}

/// Reads from a file descriptor it does not own (the caller closes it). Retries EINTR and
/// waits with poll() on a non-blocking descriptor.
public final class FileDescriptorSource: ByteSource {
    public let fd: Int32

    public init(fd: Int32) {
        self.fd = fd
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        while true {
            // The caller's buffer, its full size.
            let result = Glibc.read(fd, base, buffer.count)
            if result >= 0 { return result }
            let code = errno
            switch code {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: try waitForFileDescriptor(fd, events: Int16(POLLIN), operation: "read")
            default: throw StateFormatError.io("read: \(describeErrno(code))")
            }
        }
    }
}

/// Blocks until `fd` is ready for `events`. No timeout: a stalled peer is the caller's to cancel
/// (by closing or shutting down the descriptor, which makes poll return).
private func waitForFileDescriptor(_ fd: Int32, events: Int16, operation: String) throws {
    var entry = pollfd(fd: fd, events: events, revents: 0)
    while true {
        let result = poll(&entry, 1, -1)
        if result >= 0 { return }
        let code = errno
        if code != EINTR { throw StateFormatError.io("\(operation): poll: \(describeErrno(code))") }
    }
}

/// strerror, lower-cased as the rest of our messages ("Broken pipe" → "broken pipe").
private func describeErrno(_ code: Int32) -> String {
    guard let text = strerror(code) else { return "errno \(code)" }
    return String(cString: text).lowercased()
}
