import CLinux
import Glibc
import Shared

/// Listening UNIX sockets for the monitors and the serial console.
enum UnixListener {
    /// Creates a listening UNIX socket, owner-only, replacing a stale socket file.
    static func listen(path: String, context: String) throws -> Int32 {
        guard let address = UnixSocketAddress(path: path) else {
            throw ConfigurationError("\(context): path longer than \(UnixSocketAddress.maxPathLength) bytes")
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw ConfigurationError("\(context): socket: \(SystemError.describe(errno))") }
        func bindSocket() -> Int32 { address.withSockaddr { bind(fd, $0, $1) } }
        let oldMask = umask(0o177)  // socket file mode 0600: owner-only
        defer { umask(oldMask) }
        if bindSocket() != 0 {
            let code = errno
            // A socket file left by a dead process is replaced; a live listener is not.
            let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
            let alive = address.withSockaddr { connect(probe, $0, $1) } == 0
            close(probe)
            guard code == EADDRINUSE, !alive, unlink(path) == 0, bindSocket() == 0 else {
                close(fd)
                let why = alive ? "another process is listening on it" : SystemError.describe(code)
                throw ConfigurationError("\(context): cannot listen: \(why)")
            }
        }
        // Clients that connect while the loop is busy (or the process execs) wait in the
        // backlog; the kernel caps SOMAXCONN at net.core.somaxconn.
        guard Glibc.listen(fd, SOMAXCONN) == 0 else {
            close(fd)
            throw ConfigurationError("\(context): listen: \(SystemError.describe(errno))")
        }
        return fd
    }
}
