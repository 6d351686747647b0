import Glibc
import Shared

/// The console socket `cprctl console` connects to, and how messages name it.
struct ConsoleTarget: Equatable {
    let path: String
    /// The VM's name; nil for --socket PATH.
    let name: String?

    /// "web1's console", or "the console at PATH".
    var title: String { name.map { "\($0)'s console" } ?? "the console at \(path)" }
    /// "the console of web1", or "the console at PATH".
    var subject: String { name.map { "the console of \($0)" } ?? "the console at \(path)" }

    /// NAME -> <base>/NAME/console.sock; no NAME -> the only VM in `base` (found, like every
    /// command, by its qmp.sock); --socket -> that path as is.
    static func resolve(_ target: VMTarget, base: String) throws(TargetResolutionError) -> ConsoleTarget {
        if case .socket(let path) = target { return ConsoleTarget(path: path, name: nil) }
        guard let name = try TargetResolver.resolve(target, base: base).name else { preconditionFailure("a VM target without a name") }
        do {
            return ConsoleTarget(path: try RuntimeDirectory.consoleSocket(for: name, in: base), name: name)
        } catch {
            throw .invalidName(error)
        }
    }

    /// A connected, non-blocking socket.
    func connect() throws(ConsoleConnectError) -> Int32 {
        guard let address = UnixSocketAddress(path: path), !path.isEmpty else { throw ConsoleConnectError(path: path, errno: ENAMETOOLONG) }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ConsoleConnectError(path: path, errno: errno) }
        var result: Int32
        repeat {
            result = address.withSockaddr { Glibc.connect(fd, $0, $1) }
        } while result < 0 && errno == EINTR
        guard result == 0 else {
            let code = errno
            close(fd)
            throw ConsoleConnectError(path: path, errno: code)
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return fd
    }
}

/// Why the console socket could not be reached, said so the operator knows what to change.
struct ConsoleConnectError: Error, Equatable, CustomStringConvertible {
    let path: String
    let errno: Int32

    var description: String {
        switch errno {
        case ENOENT:
            return "no console socket at \(path): the VM must run with -serial unix:\(path),server=on,wait=off (is it running?)"
        case ENAMETOOLONG:
            return "cannot connect to \(path): the path is empty or longer than \(UnixSocketAddress.maxPathLength) bytes"
        default:
            // Refused, permission denied...: the same words as for the QMP socket.
            return QMPClientError.connect(path: path, errno: errno).description
        }
    }
}
