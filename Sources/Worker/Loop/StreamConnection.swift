import CLinux
import Glibc

/// A monitor client on the event loop: a socket, or stdin/stdout. Input arrives as chunks;
/// output is written without blocking the loop and queued while the peer is slow. A peer that
/// lets more than `outputLimit` bytes pile up (it sends commands but never reads) is dropped:
/// it cannot make the VMM buffer without bound.
final class StreamConnection {
    static let outputLimit = 1 << 20

    let readFD: Int32
    let writeFD: Int32
    private let isSocket: Bool
    private unowned let loop: EventLoop
    private var pending: [UInt8] = []
    private(set) var isClosed = false
    var onData: (UnsafeRawBufferPointer) -> Void = { _ in }
    var onClose: () -> Void = {}

    /// A connected socket (owned: closed with the connection).
    init(socket fd: Int32, loop: EventLoop) {
        readFD = fd
        writeFD = fd
        isSocket = true
        self.loop = loop
    }

    /// The process's stdin/stdout (not owned). Writes to stdout block: it is the operator's terminal.
    init(stdioOn loop: EventLoop) {
        readFD = 0
        writeFD = 1
        isSocket = false
        self.loop = loop
    }

    func start() throws(SystemError) {
        try loop.add(readFD, events: CLINUX_EPOLLIN) { [weak self] events in self?.handle(events) }
    }

    private func handle(_ events: UInt32) {
        if events & CLINUX_EPOLLOUT != 0 { flush() }
        guard !isClosed, events & (CLINUX_EPOLLIN | CLINUX_EPOLLHUP | CLINUX_EPOLLERR) != 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { read(readFD, $0.baseAddress, $0.count) }
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
        guard n > 0 else {
            close()
            return
        }
        buffer.withUnsafeBytes { onData(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
    }

    func send(_ text: String) {
        guard !isClosed else { return }
        var text = text
        text.withUTF8 { bytes in
            guard isSocket else {
                try? writeAll(writeFD, UnsafeRawBufferPointer(bytes))
                return
            }
            pending.append(contentsOf: bytes)
        }
        if isSocket { flush() }
    }

    private func flush() {
        while !pending.isEmpty && !isClosed {
            let n = pending.withUnsafeBytes { Glibc.send(writeFD, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n > 0 {
                pending.removeFirst(n)
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN {
                if pending.count > StreamConnection.outputLimit {
                    Log.warning("monitor client does not read its replies; disconnecting it")
                    close()
                } else {
                    loop.modify(readFD, events: CLINUX_EPOLLIN | CLINUX_EPOLLOUT)
                }
                return
            }
            close()  // EPIPE, ECONNRESET: the peer is gone
            return
        }
        if !isClosed { loop.modify(readFD, events: CLINUX_EPOLLIN) }
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        loop.remove(readFD)
        if isSocket { Glibc.close(readFD) }
        pending.removeAll()
        onClose()
    }
}

/// Accepts clients on a listening UNIX socket and hands each to `onClient`.
final class SocketServer {
    let path: String
    /// The listening socket; a live update hands it to the next image, so clients never
    /// see "connection refused" while the VMM is replaced.
    let listenFD: Int32

    /// `inherited`: a listening fd from the previous image (live update) instead of a new socket.
    init(path: String, context: String, loop: EventLoop, inherited: Int32? = nil, onClient: @escaping (StreamConnection) -> Void) throws {
        self.path = path
        if let inherited {
            _ = fcntl(inherited, F_SETFD, FD_CLOEXEC)
            _ = fcntl(inherited, F_SETFL, fcntl(inherited, F_GETFL) | O_NONBLOCK)
            // listen() again only sets the backlog: an image that listened with a shorter one
            // hands over a socket that gets this image's (UnixListener).
            _ = listen(inherited, SOMAXCONN)
            listenFD = inherited
        } else {
            listenFD = try UnixListener.listen(path: path, context: context)
        }
        try loop.add(listenFD, events: CLINUX_EPOLLIN) { [listenFD, unowned loop] _ in
            let fd = clinux_accept4(listenFD, Int32(SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue))
            guard fd >= 0 else { return }
            onClient(StreamConnection(socket: fd, loop: loop))
        }
    }

    deinit {
        close(listenFD)
        unlink(path)
    }
}
