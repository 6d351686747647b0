import Foundation

/// A NOTIFY_SOCKET bound by the test, standing in for systemd: collects every sd_notify
/// datagram a cprvmm sends, with the fds passed along (SCM_RIGHTS), on a background thread.
final class NotifySocket: @unchecked Sendable {
    struct Message {
        let text: String
        let fds: [Int32]
        var fields: [String: String] {
            var result: [String: String] = [:]
            for line in text.split(separator: "\n") {
                guard let equals = line.firstIndex(of: "=") else { continue }
                result[String(line[..<equals])] = String(line[line.index(after: equals)...])
            }
            return result
        }
    }

    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var received: [Message] = []

    init() throws {
        path = temporarySocketPath("notify")
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard fd >= 0, bound == 0 else { throw POSIXError(.EADDRINUSE) }
        Thread.detachNewThread { [self] in receiveLoop() }
    }

    /// Stops receiving (the thread ends) and removes the socket file.
    func close() {
        lock.lock(); stopped = true; lock.unlock()
        shutdown(fd, Int32(SHUT_RDWR))
        unlink(path)
    }

    private var stopped = false

    var messages: [Message] { lock.lock(); defer { lock.unlock() }; return received }

    /// Waits until a message satisfies `predicate`; returns it.
    func waitFor(timeout: Double = 30, _ predicate: (Message) -> Bool) -> Message? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let match = messages.first(where: predicate) { return match }
            usleep(20_000)
        }
        return nil
    }

    private func receiveLoop() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        // Room for a cmsghdr (16 bytes on 64-bit Linux) and up to 16 fds.
        var control = [UInt8](repeating: 0, count: 16 + 16 * 4)
        while true {
            let count: Int = buffer.withUnsafeMutableBytes { data in
                control.withUnsafeMutableBytes { controlBytes in
                    var vector = iovec(iov_base: data.baseAddress, iov_len: data.count)
                    return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                        var header = msghdr()
                        header.msg_iov = vectorPointer
                        header.msg_iovlen = 1
                        header.msg_control = controlBytes.baseAddress
                        header.msg_controllen = controlBytes.count
                        let received = recvmsg(fd, &header, Int32(MSG_CMSG_CLOEXEC))
                        if received >= 0 { controlLength = Int(header.msg_controllen) }
                        return received
                    }
                }
            }
            if count < 0 && errno == EINTR { continue }
            if count < 0 || (lock.withLock { stopped }) { Glibc.close(fd); return }
            var fds: [Int32] = []
            // One cmsghdr: length (8 bytes), level (4), type (4), then the fds.
            if controlLength >= 16 {
                let length = control.withUnsafeBytes { $0.load(fromByteOffset: 0, as: Int.self) }
                let level = control.withUnsafeBytes { $0.load(fromByteOffset: 8, as: Int32.self) }
                let type = control.withUnsafeBytes { $0.load(fromByteOffset: 12, as: Int32.self) }
                if level == SOL_SOCKET && type == Int32(SCM_RIGHTS) {
                    for index in 0..<((length - 16) / 4) {
                        fds.append(control.withUnsafeBytes { $0.load(fromByteOffset: 16 + 4 * index, as: Int32.self) })
                    }
                }
            }
            let message = Message(text: String(decoding: buffer[..<count], as: UTF8.self), fds: fds)
            lock.lock(); received.append(message); lock.unlock()
        }
    }

    private var controlLength = 0

    /// What an fd received from cprvmm is, as /proc shows it ("/memfd:pc.ram (deleted)").
    static func describe(_ fd: Int32) -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) ?? "?"
    }
}
