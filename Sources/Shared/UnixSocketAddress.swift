import Glibc

/// A UNIX-domain socket address for bind/connect. sun_path is a fixed 108-byte array; the
/// path must leave room for its terminating NUL, so a longer path has no address (nil).
public struct UnixSocketAddress {
    private var storage = sockaddr_un()

    public static var maxPathLength: Int { MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1 }

    public init?(path: String) {
        let bytes = Array(path.utf8)
        guard bytes.count <= UnixSocketAddress.maxPathLength else { return nil }
        storage.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &storage.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
    }

    /// Calls `body` with the generic sockaddr view and its length, as bind and connect want.
    public func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafePointer(to: storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}
