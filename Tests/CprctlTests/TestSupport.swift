import Foundation
import Glibc

/// A fresh directory under /tmp, removed with everything in it by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() {
        var template = Array("/tmp/cprctl-test-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { fatalError("mkdtemp failed: errno \(errno)") }
        path = String(cString: template)
    }

    func makeDirectory(_ relative: String) {
        mkdir(path + "/" + relative, 0o755)
    }

    func makeFile(_ relative: String) {
        let fd = open(path + "/" + relative, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        if fd >= 0 { close(fd) }
    }

    /// Leaves a UNIX socket file at `relative` that nobody listens on.
    func makeSocketFile(_ relative: String) {
        let fd = bindUnixSocket(path + "/" + relative)
        if fd >= 0 { close(fd) }
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// A UNIX stream socket bound to `path` (not listening); -1 on failure.
func bindUnixSocket(_ path: String) -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return -1 }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
        close(fd)
        return -1
    }
    // sun_path is a fixed-size char array inside `address`; the guard keeps its final NUL.
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard result == 0 else {
        close(fd)
        return -1
    }
    return fd
}

/// A UNIX socket at `path` that listens but never accepts or speaks: connect succeeds,
/// the greeting never comes.
func listeningSilentSocket(_ path: String) -> Int32 {
    let fd = bindUnixSocket(path)
    guard fd >= 0, listen(fd, 4) == 0 else { return -1 }
    return fd
}
