import Foundation
import Testing

/// A raw QMP client over a UNIX socket, line by line, for checking exact wire behaviour.
final class QMPLineClient {
    let socket: UnixClient
    private var buffer = ""
    /// Events skipped by `nextReply`, in arrival order.
    private(set) var skippedEvents: [String] = []

    /// The server closed the connection before the session was set up. During a live update
    /// this is expected for a client the old image accepted just before the exec: connect again.
    struct ConnectionDropped: Error {}

    /// Connects and, unless `negotiate` is false, reads the greeting and negotiates.
    init(path: String, negotiate: Bool = true) throws {
        socket = try UnixClient(path: path)
        guard let greeting = nextLine() else { throw ConnectionDropped() }
        #expect(greeting.hasPrefix("{\"QMP\": {\"version\": {\"qemu\": "), "greeting: \(greeting)")
        if negotiate {
            send(#"{"execute": "qmp_capabilities"}"#)
            guard let reply = nextLine() else { throw ConnectionDropped() }
            #expect(reply == #"{"return": {}}"#)
        }
    }

    func send(_ line: String) { socket.write(line + "\n") }

    /// The next CRLF-terminated message (without the terminator), or nil after `timeout`.
    func nextLine(timeout: Double = 20) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let end = buffer.range(of: "\r\n") {
                let line = String(buffer[..<end.lowerBound])
                buffer.removeSubrange(..<end.upperBound)
                return line
            }
            guard let chunk = socket.readChunk() else { return nil }
            buffer += chunk
        }
        return nil
    }

    /// The next message that is not an event.
    func nextReply(timeout: Double = 20) -> String? {
        while let line = nextLine(timeout: timeout) {
            guard line.hasPrefix("{\"event\"") else { return line }
            skippedEvents.append(line)
        }
        return nil
    }

    /// Sends one command and returns its reply, skipping events.
    func execute(_ line: String) -> String? {
        send(line)
        return nextReply()
    }
}

extension UnixClient {
    /// Whatever arrives within the socket's short receive timeout: "" if nothing, nil at EOF.
    func readChunk() -> String? {
        var bytes = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &bytes, bytes.count, 0)
        if n == 0 { return nil }
        if n < 0 { return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? "" : nil }
        return String(decoding: bytes[..<n], as: UTF8.self)
    }
}

/// A socket path in the temporary directory, short enough for sun_path.
func temporarySocketPath(_ name: String) -> String {
    "/tmp/cprvmm-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
}

/// Connects once the VM listens (a stale file at the path may exist before that).
func connectWhenListening(_ path: String, timeout: Double = 30) throws -> QMPLineClient {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        do {
            return try QMPLineClient(path: path)
        } catch where Date() < deadline {
            usleep(50_000)
        }
    }
}

/// Waits until a socket file exists (cprvmm creates its monitors as it starts).
func waitForSocket(_ path: String, timeout: Double = 30) {
    let deadline = Date().addingTimeInterval(timeout)
    while access(path, F_OK) != 0 && Date() < deadline { usleep(20_000) }
}
