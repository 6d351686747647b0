import CLinux
import Glibc
import Shared

/// What carries an open migration stream.
enum MigrationTransport {
    case file     // blocking regular-file I/O
    case socket   // non-blocking; send with MSG_NOSIGNAL
    case pipe     // non-blocking; to or from an exec: child
}

/// The descriptors and child process behind one migration channel.
///
/// The stream runs on its own thread; another thread (migrate_cancel on the monitor) may abort
/// it at any time. An abort wakes a waiting `poll` through an eventfd, and whoever is last out
/// closes the descriptors and reaps the child, so no descriptor is ever closed while another
/// thread is still using it (its number could be reused under that thread).
final class MigrationEndpoint: @unchecked Sendable {
    let uri: MigrationURI
    private let lock = Lock()
    // All below guarded by `lock`. `fd` and `listenFD` do not change while `busy`.
    let transport: MigrationTransport
    private var fd: Int32
    private var listenFD: Int32
    private var socketPathToRemove: String?
    private var child: pid_t
    private var wakeFD: Int32 = -1
    private var busy = false
    private var aborted = false
    private var closed = false

    init(uri: MigrationURI, transport: MigrationTransport, fd: Int32 = -1, listenFD: Int32 = -1,
         socketPath: String? = nil, child: pid_t = 0) throws(MigrationChannelError) {
        self.uri = uri
        self.transport = transport
        self.fd = fd
        self.listenFD = listenFD
        self.socketPathToRemove = socketPath
        self.child = child
        if transport != .file {
            wakeFD = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
            if wakeFD < 0 {
                let code = errno
                teardown()
                throw MigrationChannelError("\(uri): eventfd: \(SystemError.describe(code))")
            }
        }
    }

    deinit { abort() }

    /// The listening socket while no peer has been accepted.
    var pendingListenFD: Int32? {
        lock.withLock { !closed && listenFD >= 0 ? listenFD : nil }
    }

    var isAborted: Bool { lock.withLock { aborted } }

    // MARK: Entering and leaving I/O

    /// Marks the endpoint in use by the I/O thread and returns the stream descriptor.
    func enter(_ what: String) throws(MigrationChannelError) -> Int32 {
        let result: Result<Int32, MigrationChannelError> = lock.withLock {
            if aborted { return .failure(MigrationChannelError("\(what) \(uri) was cancelled")) }
            if closed { return .failure(MigrationChannelError("\(what) \(uri) is already closed")) }
            busy = true
            return .success(fd)
        }
        return try result.get()
    }

    /// Ends a use started by `enter`; completes an abort that arrived meanwhile.
    func leave() {
        lock.withLock {
            busy = false
            if aborted && !closed { teardown() }
        }
    }

    /// Stops the stream: wakes an I/O wait, kills an exec: child (SIGTERM, then SIGKILL)
    /// and reaps it, closes the descriptors. Returns without waiting for a busy I/O thread,
    /// which finishes the teardown when it leaves.
    func abort() {
        lock.withLock {
            guard !closed else { return }
            aborted = true
            if busy {
                var one: UInt64 = 1
                _ = Glibc.write(wakeFD, &one, 8)
            } else {
                teardown()
            }
        }
    }

    /// Closes the stream descriptor after a clean end (the I/O thread, inside enter/leave);
    /// returns the errno of close(2), 0 when it succeeded.
    func closeStream() -> Int32 {
        lock.withLock {
            guard fd >= 0 else { return 0 }
            let result = Glibc.close(fd)
            let code = result == 0 ? 0 : errno
            fd = -1
            return code == EINTR ? 0 : code  // Linux closes the descriptor even then
        }
    }

    /// Releases what is left after a clean end (the stream closed, the child reaped).
    /// Call after `leave`, from the I/O thread.
    func release() {
        lock.withLock {
            if !busy { teardown() }
        }
    }

    /// Called with `lock` held.
    private func teardown() {
        guard !closed else { return }
        closed = true
        if fd >= 0 { Glibc.close(fd) }
        if listenFD >= 0 { Glibc.close(listenFD) }
        if wakeFD >= 0 { Glibc.close(wakeFD) }
        fd = -1
        listenFD = -1
        wakeFD = -1
        if let path = socketPathToRemove { unlink(path) }
        socketPathToRemove = nil
        if child > 0 { MigrationChild.terminate(child) }
        child = 0
    }

    // MARK: Accepting

    /// Accepts the one peer on the listening socket, waiting for it; then closes the listener
    /// and removes a UNIX socket file. Does nothing when there is no listener. Call inside enter/leave.
    func acceptPeer() throws(MigrationChannelError) {
        let listener = lock.withLock { listenFD }
        guard listener >= 0 else { return }
        while true {
            let result = clinux_accept4(listener, Int32(SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue))
            if result >= 0 {
                lock.withLock {
                    fd = result
                    Glibc.close(listenFD)
                    listenFD = -1
                    if let path = socketPathToRemove { unlink(path) }
                    socketPathToRemove = nil
                }
                return
            }
            switch -result {
            case EINTR, ECONNABORTED: continue
            case EAGAIN, EWOULDBLOCK:
                guard waitReady(listener, events: Int16(POLLIN)) else {
                    throw MigrationChannelError("waiting for a peer on \(uri) was cancelled")
                }
            default:
                throw MigrationChannelError("cannot accept a peer on \(uri): \(SystemError.describe(-result))")
            }
        }
    }

    // MARK: Waiting

    /// Waits until `fd` is ready for `events` (or has an error to report); false when aborted.
    func waitReady(_ descriptor: Int32, events: Int16, timeoutMilliseconds: Int32 = -1) -> Bool {
        let wake = lock.withLock { wakeFD }
        var entries = [pollfd(fd: descriptor, events: events, revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
        while true {
            let result = poll(&entries, nfds_t(entries.count), timeoutMilliseconds)
            if result < 0 && errno == EINTR { continue }
            if result < 0 { return true }  // the I/O call that follows reports the problem
            return entries[1].revents == 0
        }
    }

    /// Waits for the exec: child to exit and reaps it; its wait status, or nil when aborted
    /// meanwhile or still running after `limitMicroseconds`. Call inside enter/leave.
    func waitForChild(limitMicroseconds: UInt32? = nil) -> Int32? {
        let pid = lock.withLock { child }
        guard pid > 0 else { return 0 }
        var delay: UInt32 = 500
        var waited: UInt32 = 0
        while true {
            if let status = MigrationChild.reap(pid, blocking: false) {
                lock.withLock { child = 0 }
                return status
            }
            if isAborted { return nil }
            if let limit = limitMicroseconds, waited >= limit { return nil }
            usleep(delay)
            waited += delay
            delay = min(delay * 2, 50_000)
        }
    }

    var hasChild: Bool { lock.withLock { child > 0 } }

    /// The exec: shell not yet reaped, if any (tests).
    var childProcessID: pid_t? { lock.withLock { child > 0 ? child : nil } }
}

/// exec: children: started with posix_spawn, reaped by pid (never waitpid(-1)).
enum MigrationChild {
    /// Starts `/bin/sh -c command` with a close-on-exec pipe: `.toChild` gives the child its
    /// stdin and returns our write end; `.fromChild` gives it its stdout and returns our read end.
    enum Direction { case toChild, fromChild }

    static func spawn(_ command: String, _ direction: Direction, uri: MigrationURI) throws(MigrationChannelError) -> (fd: Int32, pid: pid_t) {
        var fds: [Int32] = [-1, -1]
        let piped = clinux_pipe2(&fds, O_CLOEXEC)
        guard piped == 0 else { throw MigrationChannelError("\(uri): pipe: \(SystemError.describe(-piped))") }
        let (ours, theirs, target): (Int32, Int32, Int32) = direction == .toChild ? (fds[1], fds[0], 0) : (fds[0], fds[1], 1)
        let pid = clinux_spawn_shell(command, theirs, target)
        Glibc.close(theirs)
        guard pid > 0 else {
            Glibc.close(ours)
            throw MigrationChannelError("\(uri): cannot start /bin/sh: \(SystemError.describe(-pid))")
        }
        _ = fcntl(ours, F_SETFL, fcntl(ours, F_GETFL) | O_NONBLOCK)
        return (ours, pid)
    }

    /// The wait status of `pid` once it has exited; nil while it runs (only when not `blocking`).
    /// A child reaped by someone else (SIGCHLD ignored) counts as a success: its status is lost.
    static func reap(_ pid: pid_t, blocking: Bool) -> Int32? {
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, blocking ? 0 : WNOHANG)
            if result == pid { return status }
            if result == 0 { return nil }
            if errno == EINTR { continue }
            return 0
        }
    }

    /// Ends a child that may still run, with everything it started (its process group):
    /// SIGTERM, up to 200 ms for the shell to exit, then SIGKILL; always reaps the shell.
    /// The shell is not reaped before the signal, so its pid (the group id) cannot have been reused.
    static func terminate(_ pid: pid_t) {
        kill(-pid, SIGTERM)
        for _ in 0..<40 {
            if reap(pid, blocking: false) != nil { return }
            usleep(5_000)
        }
        kill(-pid, SIGKILL)
        _ = reap(pid, blocking: true)
    }

    /// nil for a clean exit, else what went wrong ("exited with status 3").
    static func failure(_ status: Int32) -> String? {
        let signal = status & 0x7f
        if signal == 0 {
            let code = (status >> 8) & 0xff
            return code == 0 ? nil : "exited with status \(code)"
        }
        return "was killed by signal \(signal)"
    }
}

/// Runs `body` with SIGPIPE blocked in this thread and discards a SIGPIPE the body raised,
/// so writing to a pipe whose reader died gives EPIPE instead of killing the process, even
/// when SIGPIPE is not ignored process-wide. `body` returns 0 or an errno.
func withSIGPIPESuppressed(_ body: () -> Int32) -> Int32 {
    var pipeOnly = sigset_t()
    sigemptyset(&pipeOnly)
    sigaddset(&pipeOnly, SIGPIPE)
    var pending = sigset_t()
    sigemptyset(&pending)
    sigpending(&pending)
    let alreadyPending = sigismember(&pending, SIGPIPE) == 1
    var previous = sigset_t()
    pthread_sigmask(SIG_BLOCK, &pipeOnly, &previous)
    let code = body()
    if code == EPIPE && !alreadyPending {
        var zero = timespec(tv_sec: 0, tv_nsec: 0)
        while sigtimedwait(&pipeOnly, nil, &zero) < 0 && errno == EINTR {}
    }
    pthread_sigmask(SIG_SETMASK, &previous, nil)
    return code
}

// MARK: Opening sockets

enum MigrationSockets {
    /// A connected UNIX stream socket (blocking connect, then non-blocking).
    static func connectUnix(_ path: String, uri: MigrationURI) throws(MigrationChannelError) -> Int32 {
        guard let address = UnixSocketAddress(path: path) else {
            throw MigrationChannelError("cannot connect to \(uri): path longer than \(UnixSocketAddress.maxPathLength) bytes")
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw MigrationChannelError("cannot connect to \(uri): socket: \(SystemError.describe(errno))") }
        let code = address.withSockaddr { connectRetryingEINTR(fd, $0, $1) }
        guard code == 0 else {
            Glibc.close(fd)
            throw MigrationChannelError("cannot connect to \(uri): \(SystemError.describe(code))")
        }
        setNonBlocking(fd)
        return fd
    }

    /// Connects to the first address of HOST:PORT that accepts; an empty host is this machine.
    static func connectTCP(host: String, port: UInt16, uri: MigrationURI) throws(MigrationChannelError) -> Int32 {
        var lastError = ECONNREFUSED
        let result = resolve(host: host, port: port, passive: false) { info -> Int32? in
            let fd = socket(info.ai_family, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), info.ai_protocol)
            guard fd >= 0 else {
                lastError = errno
                return nil
            }
            let code = connectRetryingEINTR(fd, info.ai_addr, info.ai_addrlen)
            guard code == 0 else {
                lastError = code
                Glibc.close(fd)
                return nil
            }
            setNonBlocking(fd)
            return fd
        }
        switch result {
        case .found(let fd): return fd
        case .exhausted: throw MigrationChannelError("cannot connect to \(uri): \(SystemError.describe(lastError))")
        case .resolveFailed(let why): throw MigrationChannelError("cannot connect to \(uri): \(why)")
        }
    }

    /// A listening TCP socket (SO_REUSEADDR, non-blocking) on the first address of HOST:PORT
    /// that binds; an empty host is every address (IPv6 and IPv4 when the host has both).
    static func listenTCP(host: String, port: UInt16, uri: MigrationURI) throws(MigrationChannelError) -> Int32 {
        var lastError = EADDRNOTAVAIL
        let result = resolve(host: host, port: port, passive: true) { info -> Int32? in
            let fd = socket(info.ai_family, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue), info.ai_protocol)
            guard fd >= 0 else {
                lastError = errno
                return nil
            }
            var on: Int32 = 1
            var off: Int32 = 0
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
            if info.ai_family == AF_INET6 && host.isEmpty {
                setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &off, socklen_t(MemoryLayout<Int32>.size))
            }
            guard bind(fd, info.ai_addr, info.ai_addrlen) == 0, Glibc.listen(fd, 1) == 0 else {
                lastError = errno
                Glibc.close(fd)
                return nil
            }
            return fd
        }
        switch result {
        case .found(let fd): return fd
        case .exhausted: throw MigrationChannelError("cannot listen on \(uri): \(SystemError.describe(lastError))")
        case .resolveFailed(let why): throw MigrationChannelError("cannot listen on \(uri): \(why)")
        }
    }

    /// The local port of a bound socket.
    static func boundPort(_ fd: Int32) -> UInt16? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &storage) { pointer -> UInt16? in
            let ok = pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
            guard ok else { return nil }
            switch Int32(pointer.pointee.ss_family) {
            case AF_INET: return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
            case AF_INET6: return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            default: return nil
            }
        }
    }

    private enum Resolution {
        case found(Int32)
        case exhausted
        case resolveFailed(String)
    }

    /// getaddrinfo, then `attempt` on each address in turn (IPv6 first for an empty passive host).
    private static func resolve(host: String, port: UInt16, passive: Bool, _ attempt: (addrinfo) -> Int32?) -> Resolution {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = host.isEmpty
            ? getaddrinfo(nil, String(port), &hints, &list)
            : getaddrinfo(host, String(port), &hints, &list)
        guard status == 0 else {
            if status == EAI_SYSTEM { return .resolveFailed(SystemError.describe(errno)) }
            var why = gai_strerror(status).map { String(cString: $0) } ?? "getaddrinfo error \(status)"
            if let first = why.first { why = first.lowercased() + why.dropFirst() }
            return .resolveFailed(why)
        }
        defer { freeaddrinfo(list) }
        var candidates: [addrinfo] = []
        var entry = list
        while let current = entry {
            candidates.append(current.pointee)
            entry = current.pointee.ai_next
        }
        if passive && host.isEmpty {
            candidates = candidates.filter { $0.ai_family == AF_INET6 } + candidates.filter { $0.ai_family != AF_INET6 }
        }
        for candidate in candidates {
            if let fd = attempt(candidate) { return .found(fd) }
        }
        return .exhausted
    }

    /// connect(2); after EINTR the connection goes on in the background, so wait for it.
    /// Returns 0 or the errno.
    private static func connectRetryingEINTR(_ fd: Int32, _ address: UnsafePointer<sockaddr>?, _ length: socklen_t) -> Int32 {
        if Glibc.connect(fd, address, length) == 0 { return 0 }
        let code = errno
        guard code == EINTR else { return code }
        var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        while poll(&entry, 1, -1) < 0 && errno == EINTR {}
        var error: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) == 0 else { return errno }
        return error
    }

    static func setNonBlocking(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }
}
