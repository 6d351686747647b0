import Glibc

/// A failure opening, writing, reading or closing a migration stream. One line that names the URI.
public struct MigrationChannelError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Bytes are gathered into a buffer of this size before they reach the descriptor, so a stream
/// written as many small pieces (frame headers, CRCs) costs few system calls. Bigger writes and
/// reads go straight through.
let migrationChannelBufferSize = 64 * 1024

/// An open outgoing migration stream (migrate URI). Blocking: run it on the stream's own thread.
/// `cancel()` may be called from any thread at any time.
public final class OutgoingMigrationChannel: @unchecked Sendable {
    public let uri: MigrationURI
    /// Bytes accepted by `write` so far (some may still sit in the buffer until the next
    /// write or `finish`).
    public private(set) var bytesWritten: UInt64 = 0

    private let endpoint: MigrationEndpoint
    private let buffer: UnsafeMutableRawBufferPointer
    private var buffered = 0
    /// The first write failure: the stream is broken, later writes and `finish` repeat it.
    private var failure: MigrationChannelError?

    /// Opens the destination:
    /// - file: O_WRONLY|O_CREAT (mode 0600 when created); with offset 0 the file is truncated,
    ///   otherwise it is cut to `offset` bytes (what lies before the offset stays) and the stream
    ///   is written from there.
    /// - unix: connects to the socket.
    /// - tcp: getaddrinfo, then the first address that accepts the connection.
    /// - exec: `/bin/sh -c COMMAND` with a pipe to its stdin (posix_spawn; the child inherits no
    ///   other descriptor above 2).
    public init(_ uri: MigrationURI) throws(MigrationChannelError) {
        self.uri = uri
        switch uri {
        case .file(let path, let offset):
            let fd = try Self.openFile(path, offset: offset, uri: uri)
            endpoint = try MigrationEndpoint(uri: uri, transport: .file, fd: fd)
        case .unix(let path):
            let fd = try MigrationSockets.connectUnix(path, uri: uri)
            endpoint = try MigrationEndpoint(uri: uri, transport: .socket, fd: fd)
        case .tcp(let host, let port):
            let fd = try MigrationSockets.connectTCP(host: host, port: port, uri: uri)
            endpoint = try MigrationEndpoint(uri: uri, transport: .socket, fd: fd)
        case .exec(let command):
            let (fd, pid) = try MigrationChild.spawn(command, .toChild, uri: uri)
            endpoint = try MigrationEndpoint(uri: uri, transport: .pipe, fd: fd, child: pid)
        case .memfd:
            throw MigrationChannelError(MigrationURI.memfdOnlyForLiveUpdate)
        }
        buffer = .allocate(byteCount: migrationChannelBufferSize, alignment: 16)
    }

    deinit {
        endpoint.abort()
        buffer.deallocate()
    }

    private static func openFile(_ path: String, offset: UInt64, uri: MigrationURI) throws(MigrationChannelError) -> Int32 {
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (offset == 0 ? O_TRUNC : 0), 0o600)
        guard fd >= 0 else { throw MigrationChannelError("cannot open \(uri): \(SystemError.describe(errno))") }
        if offset > 0 {
            var info = stat()
            let isRegular = fstat(fd, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
            // A device or FIFO cannot be truncated, and need not be.
            if offset > UInt64(Int64.max) || (isRegular && ftruncate(fd, off_t(offset)) != 0)
                || lseek(fd, off_t(offset), SEEK_SET) < 0 {
                let code = offset > UInt64(Int64.max) ? EINVAL : errno
                close(fd)
                throw MigrationChannelError("cannot open \(uri): cannot seek to offset \(offset): \(SystemError.describe(code))")
            }
        }
        return fd
    }

    /// Writes all of `bytes` (buffered). Errors name the URI: "the destination closed the
    /// stream (unix:/x)", "no space left on device writing file:/x", "exec:CMD exited with
    /// status 1", "the migration to URI was cancelled".
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        if let failure { throw failure }
        let fd = try endpoint.enter("the migration to")
        defer { endpoint.leave() }
        do throws(MigrationChannelError) {
            if buffered + bytes.count > buffer.count {
                try flush(fd)
                if bytes.count >= buffer.count {
                    try send(fd, bytes.baseAddress!, bytes.count)
                    bytesWritten += UInt64(bytes.count)
                    return
                }
            }
            if bytes.count > 0 {
                // buffered + bytes.count <= buffer.count here.
                (buffer.baseAddress! + buffered).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                buffered += bytes.count
            }
            bytesWritten += UInt64(bytes.count)
        } catch {
            failure = error
            throw error
        }
    }

    /// The byte a cprvmm target sends back over a socket once it has loaded the whole stream.
    static let loadedAcknowledgement: UInt8 = 0x06  // ASCII ACK

    /// Flushes and closes. For exec:, waits for the command and fails when it did not exit with
    /// status 0 ("exec:CMD exited with status 3"). A file is not fsynced; close errors are
    /// reported. After a failure the channel is torn down as by `cancel()`.
    /// `requireAcknowledgement`: over a socket, the peer must confirm it loaded the stream
    /// (`IncomingMigrationChannel.acknowledgeLoaded`) before this returns; a peer that closes
    /// without it failed (pre-copy: the source then runs the guest on).
    public func finish(requireAcknowledgement: Bool = false) throws {
        if let failure {
            endpoint.abort()
            throw failure
        }
        let fd = try endpoint.enter("the migration to")
        var result: MigrationChannelError?
        do throws(MigrationChannelError) {
            try flush(fd)
            if endpoint.transport == .socket {
                let acknowledged = awaitPeerClose(fd)
                if requireAcknowledgement && !acknowledged {
                    throw MigrationChannelError("\(uri) closed the connection without confirming that it loaded the state (see the target's log); the VM runs on here")
                }
            }
            let code = endpoint.closeStream()
            if code != 0 { throw describeWriteFailure(code) }
            if endpoint.hasChild {
                guard let status = endpoint.waitForChild() else { throw cancelledError }
                if let why = MigrationChild.failure(status) { throw MigrationChannelError("\(uri) \(why)") }
            }
        } catch {
            result = error
        }
        endpoint.leave()
        if let result {
            failure = result
            endpoint.abort()
            throw result
        }
        endpoint.release()
        failure = MigrationChannelError("the migration to \(uri) is already finished")
    }

    /// How long `finish` waits for a socket's peer to close after the last byte.
    static let peerCloseTimeoutMilliseconds: Int32 = 10_000

    /// After the end of the stream, a socket's peer (a cprvmm target) confirms with one byte
    /// that it loaded everything, right before it runs the guest, and closes: waiting for that
    /// makes "completed" (and the downtime) mean the target has the guest, not that the bytes
    /// sat in this host's socket buffer. Returns whether the confirmation came; a peer that
    /// neither confirms nor closes is given up on after a while.
    private func awaitPeerClose(_ fd: Int32) -> Bool {
        shutdown(fd, Int32(SHUT_WR))
        var byte: UInt8 = 0
        var acknowledged = false
        let deadline = monotonicNanoseconds() + UInt64(Self.peerCloseTimeoutMilliseconds) * 1_000_000
        while true {
            let n = Glibc.read(fd, &byte, 1)
            if n == 1 && byte == Self.loadedAcknowledgement { acknowledged = true }
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { return acknowledged }
            let now = monotonicNanoseconds()
            guard now < deadline else { return acknowledged }
            if n < 0 && errno == EAGAIN {
                guard endpoint.waitReady(fd, events: Int16(POLLIN), timeoutMilliseconds: Int32((deadline - now) / 1_000_000) + 1) else {
                    return acknowledged
                }
            }
        }
    }

    /// Aborts (migrate_cancel, or an error elsewhere): closes without flushing; kills an exec:
    /// child (SIGTERM, SIGKILL after 200 ms) and reaps it. From another thread, wakes a write
    /// blocked on a full socket or pipe, which then fails with "... was cancelled".
    public func cancel() {
        endpoint.abort()
    }

    /// The exec: shell while it is not yet reaped (tests).
    var childProcessID: pid_t? { endpoint.childProcessID }

    private var cancelledError: MigrationChannelError {
        MigrationChannelError("the migration to \(uri) was cancelled")
    }

    private func flush(_ fd: Int32) throws(MigrationChannelError) {
        guard buffered > 0 else { return }
        try send(fd, UnsafeRawPointer(buffer.baseAddress!), buffered)
        buffered = 0
    }

    /// Writes `count` bytes to the descriptor, all of them, waiting while it is full.
    private func send(_ fd: Int32, _ base: UnsafeRawPointer, _ count: Int) throws(MigrationChannelError) {
        let code: Int32
        switch endpoint.transport {
        case .pipe: code = withSIGPIPESuppressed { writeLoop(fd, base, count) }
        case .file, .socket: code = writeLoop(fd, base, count)
        }
        if code == Self.cancelled { throw cancelledError }
        if code != 0 { throw describeWriteFailure(code) }
    }

    private static let cancelled: Int32 = -1

    /// 0, an errno, or `cancelled`.
    private func writeLoop(_ fd: Int32, _ base: UnsafeRawPointer, _ count: Int) -> Int32 {
        let isSocket = endpoint.transport == .socket
        var done = 0
        while done < count {
            let n = isSocket
                ? Glibc.send(fd, base + done, count - done, Int32(MSG_NOSIGNAL))
                : Glibc.write(fd, base + done, count - done)
            if n > 0 {
                done += n
                continue
            }
            if n == 0 { return EIO }
            let code = errno
            switch code {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK:
                if !endpoint.waitReady(fd, events: Int16(POLLOUT)) { return Self.cancelled }
            default: return code
            }
        }
        return 0
    }

    private func describeWriteFailure(_ code: Int32) -> MigrationChannelError {
        switch code {
        case EPIPE, ECONNRESET:
            // A command that stopped reading usually failed: say how, when it has exited.
            if endpoint.hasChild, let status = endpoint.waitForChild(limitMicroseconds: 200_000),
               let why = MigrationChild.failure(status) {
                return MigrationChannelError("\(uri) \(why)")
            }
            return MigrationChannelError("the destination closed the stream (\(uri))")
        case ENOSPC: return MigrationChannelError("no space left on device writing \(uri)")
        case EDQUOT: return MigrationChannelError("disk quota exceeded writing \(uri)")
        default: return MigrationChannelError("cannot write to \(uri): \(SystemError.describe(code))")
        }
    }
}

/// An incoming migration stream (-incoming URI). `init` listens (or opens the file, or starts
/// the command); `listeningFD` is the descriptor to poll for a peer, `acceptPeer()` accepts it.
/// Blocking reads: run them on the stream's own thread. `close()` may be called from any thread.
public final class IncomingMigrationChannel: @unchecked Sendable {
    public let uri: MigrationURI
    /// The port a tcp: URI is listening on; the kernel's choice for port 0.
    public let boundPort: UInt16?

    private let endpoint: MigrationEndpoint
    private let buffer: UnsafeMutableRawBufferPointer
    private var bufferStart = 0
    private var bufferEnd = 0
    private var atEnd = false

    /// - file: opens PATH read-only and seeks to the offset.
    /// - unix: listens on PATH (mode 0600, a stale socket file replaced); the file is removed
    ///   once the peer is accepted, or on `close()`.
    /// - tcp: listens on HOST:PORT (SO_REUSEADDR; an empty host is every address).
    /// - exec: starts `/bin/sh -c COMMAND` and reads its stdout.
    public init(_ uri: MigrationURI) throws(MigrationChannelError) {
        self.uri = uri
        var port: UInt16?
        switch uri {
        case .file(let path, let offset):
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw MigrationChannelError("cannot open \(uri): \(SystemError.describe(errno))") }
            if offset > 0 && (offset > UInt64(Int64.max) || lseek(fd, off_t(offset), SEEK_SET) < 0) {
                let code = offset > UInt64(Int64.max) ? EINVAL : errno
                Glibc.close(fd)
                throw MigrationChannelError("cannot open \(uri): cannot seek to offset \(offset): \(SystemError.describe(code))")
            }
            endpoint = try MigrationEndpoint(uri: uri, transport: .file, fd: fd)
        case .unix(let path):
            let listener: Int32
            do {
                listener = try UnixListener.listen(path: path, context: uri.description)
            } catch {
                throw MigrationChannelError("\(error)")
            }
            endpoint = try MigrationEndpoint(uri: uri, transport: .socket, listenFD: listener, socketPath: path)
        case .tcp(let host, let requestedPort):
            let listener = try MigrationSockets.listenTCP(host: host, port: requestedPort, uri: uri)
            port = MigrationSockets.boundPort(listener)
            endpoint = try MigrationEndpoint(uri: uri, transport: .socket, listenFD: listener)
        case .exec(let command):
            let (fd, pid) = try MigrationChild.spawn(command, .fromChild, uri: uri)
            endpoint = try MigrationEndpoint(uri: uri, transport: .pipe, fd: fd, child: pid)
        case .memfd:
            throw MigrationChannelError(MigrationURI.memfdOnlyForLiveUpdate)
        }
        boundPort = port
        buffer = .allocate(byteCount: migrationChannelBufferSize, alignment: 16)
    }

    deinit {
        endpoint.abort()
        buffer.deallocate()
    }

    /// The listening socket to poll for a peer; nil once accepted, and for file: and exec:.
    public var listeningFD: Int32? { endpoint.pendingListenFD }

    /// Waits for the peer and accepts it; then stops listening. Does nothing when there is
    /// no listener (file:, exec:, or already accepted). `read` calls it when needed.
    public func acceptPeer() throws(MigrationChannelError) {
        _ = try endpoint.enter("the migration from")
        defer { endpoint.leave() }
        try endpoint.acceptPeer()
    }

    /// Reads up to bytes.count bytes; 0 at the end of the stream. For exec:, the end of the
    /// stream fails when the command did not exit with status 0 ("exec:CMD exited with status 1").
    public func read(into bytes: UnsafeMutableRawBufferPointer) throws -> Int {
        guard bytes.count > 0 else { return 0 }
        if listeningFD != nil { try acceptPeer() }
        let fd = try endpoint.enter("the migration from")
        defer { endpoint.leave() }
        if bufferStart == bufferEnd {
            if atEnd { return 0 }
            if bytes.count >= buffer.count {
                let n = try readOnce(fd, bytes.baseAddress!, bytes.count)
                if n == 0 { try reachedEnd() }
                return n
            }
            let n = try readOnce(fd, buffer.baseAddress!, buffer.count)
            if n == 0 {
                try reachedEnd()
                return 0
            }
            bufferStart = 0
            bufferEnd = n
        }
        let count = min(bytes.count, bufferEnd - bufferStart)
        bytes.baseAddress!.copyMemory(from: buffer.baseAddress! + bufferStart, byteCount: count)
        bufferStart += count
        return count
    }

    /// Stops: closes the descriptors (removing a UNIX socket file not yet accepted on) and
    /// kills and reaps an exec: command still running. From another thread, wakes a blocked
    /// `acceptPeer` or `read`, which then fails with "... was cancelled".
    public func close() {
        endpoint.abort()
    }

    /// Tells a socket's peer (a cprvmm source) that the whole stream was loaded
    /// (`OutgoingMigrationChannel.loadedAcknowledgement`); nothing for files and exec:.
    public func acknowledgeLoaded() {
        guard endpoint.transport == .socket, let fd = try? endpoint.enter("the migration from") else { return }
        defer { endpoint.leave() }
        var byte = OutgoingMigrationChannel.loadedAcknowledgement
        _ = send(fd, &byte, 1, Int32(MSG_NOSIGNAL))
    }

    /// The exec: shell while it is not yet reaped (tests).
    var childProcessID: pid_t? { endpoint.childProcessID }

    private func reachedEnd() throws(MigrationChannelError) {
        atEnd = true
        guard endpoint.hasChild else { return }
        guard let status = endpoint.waitForChild() else {
            throw MigrationChannelError("the migration from \(uri) was cancelled")
        }
        if let why = MigrationChild.failure(status) { throw MigrationChannelError("\(uri) \(why)") }
    }

    private func readOnce(_ fd: Int32, _ base: UnsafeMutableRawPointer, _ count: Int) throws(MigrationChannelError) -> Int {
        while true {
            let n = Glibc.read(fd, base, count)
            if n >= 0 { return n }
            let code = errno
            switch code {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK:
                if !endpoint.waitReady(fd, events: Int16(POLLIN)) {
                    throw MigrationChannelError("the migration from \(uri) was cancelled")
                }
            default:
                throw MigrationChannelError("cannot read from \(uri): \(SystemError.describe(code))")
            }
        }
    }
}
