import CLinux
import Glibc

/// Listening UNIX sockets for the monitors and the serial console.
enum UnixListener {
    /// Creates a listening UNIX socket, owner-only, replacing a stale socket file.
    static func listen(path: String, context: String) throws -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.utf8.count < capacity else {
            throw ConfigurationError("\(context): path longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path.utf8)
            raw[path.utf8.count] = 0
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw ConfigurationError("\(context): socket: \(SystemError.describe(errno))") }
        let length = socklen_t(MemoryLayout<sockaddr_un>.size)
        func bindSocket() -> Int32 {
            withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        }
        let oldMask = umask(0o177)  // socket file mode 0600: owner-only
        defer { umask(oldMask) }
        if bindSocket() != 0 {
            let code = errno
            // A socket file left by a dead process is replaced; a live listener is not.
            let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
            let alive = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, length) == 0 }
            }
            close(probe)
            guard code == EADDRINUSE, !alive, unlink(path) == 0, bindSocket() == 0 else {
                close(fd)
                let why = alive ? "another process is listening on it" : SystemError.describe(code)
                throw ConfigurationError("\(context): cannot listen: \(why)")
            }
        }
        guard Glibc.listen(fd, 8) == 0 else {
            close(fd)
            throw ConfigurationError("\(context): listen: \(SystemError.describe(errno))")
        }
        return fd
    }
}
