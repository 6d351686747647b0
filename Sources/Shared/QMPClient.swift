import CLinux
import Glibc

/// Why talking to a QMP server failed. Each description is one line an operator can act on.
public enum QMPClientError: Error, Equatable, CustomStringConvertible {
    /// connect(2) failed with this errno.
    case connect(path: String, errno: Int32)
    /// The server did not answer (greeting or reply) before the deadline.
    case timeout(path: String, seconds: Double)
    /// The server said something a QMP server would not.
    case unexpectedReply(path: String, detail: String)
    /// The connection broke: closed by the server, or a read/write error.
    case connectionLost(path: String, detail: String)
    /// The command failed: QMP's `{"error": {"class": ..., "desc": ...}}`.
    case command(errorClass: String, desc: String)

    public var description: String {
        switch self {
        case .connect(let path, let code):
            switch code {
            case ENOENT: return "cannot connect to \(path): no such file (is the VM running?)"
            case ECONNREFUSED: return "cannot connect to \(path): connection refused (is the VM running?)"
            case EACCES: return "cannot connect to \(path): permission denied (run as root or as the VM's user)"
            default: return "cannot connect to \(path): \(QMPClientError.describe(errno: code))"
            }
        case .timeout(let path, let seconds):
            return "no answer from \(path) within \(QMPClientError.format(seconds: seconds)) s"
        case .unexpectedReply(let path, let detail):
            return "unexpected reply from \(path): \(detail)"
        case .connectionLost(let path, let detail):
            return "lost connection to \(path): \(detail)"
        case .command(let errorClass, let desc):
            return "\(errorClass): \(desc)"
        }
    }

    /// strerror, lower-cased as the rest of our messages.
    static func describe(errno code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text).lowercased()
    }

    /// "5" for 5.0, "0.5" for 0.5.
    static func format(seconds: Double) -> String {
        if seconds == seconds.rounded(), abs(seconds) < 1e15 { return String(Int64(seconds)) }
        return seconds.description
    }
}

/// A blocking QMP client over a UNIX socket, for cprctl and tests.
///
/// `init` connects, reads the greeting and negotiates capabilities (`qmp_capabilities`);
/// `execute` sends one command with a fresh `"id"` and waits for its reply, keeping the
/// asynchronous events that come meanwhile aside (`events`). Every wait is bounded by `timeoutSeconds` (per call to `init` and
/// to `execute`). Not thread-safe: one command at a time.
public final class QMPClient {
    public let path: String
    public let timeoutSeconds: Double
    /// The greeting's `"QMP"` object: `{"version": {...}, "capabilities": [...]}`.
    public let greeting: JSONObject

    private var channel: QMPChannel
    private var lastID: Int64 = 0

    /// The asynchronous events (`{"event": ...}`) read while waiting for replies, oldest first
    /// (the last `maxKeptEvents`). A client that follows a job by polling learns from them how
    /// it ended even when the server exits before the next poll.
    public private(set) var events: [JSONValue] = []
    public static let maxKeptEvents = 256

    /// Replies larger than this are refused (query-qmp-schema, the largest QEMU reply, is ~200 KiB).
    public static let maxReplySize = 16 << 20

    public init(path: String, timeoutSeconds: Double = 5) throws(QMPClientError) {
        let deadline = QMPChannel.deadline(after: timeoutSeconds)
        var channel = try QMPChannel(path: path, timeoutSeconds: timeoutSeconds, deadline: deadline)
        do {
            let message = try channel.receive(deadline: deadline)
            guard let greeting = message["QMP"]?.objectValue else {
                throw QMPClientError.unexpectedReply(
                    path: path, detail: "expected the QMP greeting, got \(QMPChannel.abbreviate(message)) (is this a QMP socket?)")
            }
            self.greeting = greeting
            lastID = 1
            try channel.send(["execute": "qmp_capabilities", "id": .int(lastID)], deadline: deadline)
            let reply = try Self.awaitReply(on: &channel, id: .int(lastID), deadline: deadline)
            guard reply == .object(JSONObject()) else {
                throw QMPClientError.unexpectedReply(path: path, detail: "qmp_capabilities returned \(QMPChannel.abbreviate(reply))")
            }
        } catch let error as QMPClientError {
            channel.close()
            throw error
        } catch {
            channel.close()
            throw QMPClientError.unexpectedReply(path: path, detail: "\(error)")
        }
        self.path = path
        self.timeoutSeconds = timeoutSeconds
        self.channel = channel
    }

    deinit {
        channel.close()
    }

    /// The pid of the process serving this connection (SO_PEERCRED), while connected.
    public var serverPID: pid_t? { channel.peerPID }

    /// Closes the connection; later calls to `execute` fail. Called by deinit too.
    public func close() {
        channel.close()
    }

    /// Runs a command and returns its `"return"` value; a QMP error becomes
    /// `QMPClientError.command(errorClass:desc:)`.
    public func execute(_ command: String, arguments: JSONObject? = nil) throws(QMPClientError) -> JSONValue {
        let deadline = QMPChannel.deadline(after: timeoutSeconds)
        lastID += 1
        var message: JSONObject = ["execute": .string(command)]
        if let arguments { message["arguments"] = .object(arguments) }
        message["id"] = .int(lastID)
        try channel.send(message, deadline: deadline)
        while true {
            let message = try channel.receive(deadline: deadline)
            keepEvent(message)
            if let result = try Self.interpret(message, expectedID: .int(lastID), path: path) { return result }
        }
    }

    /// Reads what the server sent before it closed the connection, for its events: after
    /// `execute` failed because the server went away, the last ones may still be unread.
    /// Returns when the connection ends or after `timeoutSeconds`.
    public func drainEvents(timeoutSeconds: Double = 0.5) {
        let deadline = QMPChannel.deadline(after: timeoutSeconds)
        while let message = try? channel.receive(deadline: deadline) { keepEvent(message) }
    }

    private func keepEvent(_ message: JSONValue) {
        guard message["event"] != nil else { return }
        events.append(message)
        if events.count > Self.maxKeptEvents { events.removeFirst(events.count - Self.maxKeptEvents) }
    }

    private static func awaitReply(on channel: inout QMPChannel, id: JSONValue, deadline: UInt64) throws(QMPClientError) -> JSONValue {
        while true {
            let message = try channel.receive(deadline: deadline)
            if let result = try interpret(message, expectedID: id, path: channel.path) { return result }
        }
    }

    /// What one message from the server means while waiting for the reply with `expectedID`:
    /// nil to keep waiting (an event, or a reply to another id), the `"return"` value, or a
    /// thrown error. A reply without `"id"` counts as ours (servers answer unparseable input so).
    static func interpret(_ message: JSONValue, expectedID: JSONValue, path: String) throws(QMPClientError) -> JSONValue? {
        guard let object = message.objectValue else {
            throw QMPClientError.unexpectedReply(path: path, detail: "expected a JSON object, got \(QMPChannel.abbreviate(message))")
        }
        if object["event"] != nil { return nil }
        if let id = object["id"], id != expectedID { return nil }
        if let result = object["return"] { return result }
        if let error = object["error"] {
            guard let errorClass = error["class"]?.stringValue, let desc = error["desc"]?.stringValue else {
                throw QMPClientError.unexpectedReply(path: path, detail: "malformed error \(QMPChannel.abbreviate(error))")
            }
            throw QMPClientError.command(errorClass: errorClass, desc: desc)
        }
        throw QMPClientError.unexpectedReply(
            path: path, detail: "expected \"return\" or \"error\", got \(QMPChannel.abbreviate(message))")
    }
}

/// The socket under a QMPClient: non-blocking, every wait bounded by a deadline.
struct QMPChannel {
    let path: String
    let timeoutSeconds: Double
    private var fd: Int32
    private var splitter = JSONStreamSplitter(maxMessageSize: QMPClient.maxReplySize)

    init(path: String, timeoutSeconds: Double, deadline: UInt64) throws(QMPClientError) {
        self.path = path
        self.timeoutSeconds = timeoutSeconds
        self.fd = try Self.connect(path: path, timeoutSeconds: timeoutSeconds, deadline: deadline)
    }

    mutating func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// The server process's pid (the peer credentials of the connection), if known.
    var peerPID: pid_t? {
        let pid = fd >= 0 ? clinux_peer_pid(fd) : -EBADF
        return pid > 0 ? pid : nil
    }

    /// CLOCK_MONOTONIC deadline, in nanoseconds, `seconds` from now.
    static func deadline(after seconds: Double) -> UInt64 {
        let nanoseconds = seconds > 0 ? min(seconds, 1e9) * 1e9 : 0
        return clinux_monotonic_ns() + UInt64(nanoseconds)
    }

    private static func connect(path: String, timeoutSeconds: Double, deadline: UInt64) throws(QMPClientError) -> Int32 {
        guard let address = UnixSocketAddress(path: path) else {
            throw QMPClientError.connect(path: path, errno: ENAMETOOLONG)
        }
        guard !path.isEmpty, !path.utf8.contains(0) else { throw QMPClientError.connect(path: path, errno: ENOENT) }

        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw QMPClientError.connect(path: path, errno: errno) }
        while true {
            let result = address.withSockaddr { Glibc.connect(fd, $0, $1) }
            if result == 0 { return fd }
            let code = errno
            switch code {
            case EINTR:
                continue
            case EAGAIN:
                // The server's listen backlog is full: it is alive but busy; retry until the deadline.
                guard clinux_monotonic_ns() < deadline else {
                    Glibc.close(fd)
                    throw QMPClientError.timeout(path: path, seconds: timeoutSeconds)
                }
                usleep(10_000)
            default:
                Glibc.close(fd)
                throw QMPClientError.connect(path: path, errno: code)
            }
        }
    }

    /// The next message from the server, parsed; blocks until the deadline.
    mutating func receive(deadline: UInt64) throws(QMPClientError) -> JSONValue {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let message: [UInt8]?
            do {
                message = try splitter.next()
            } catch {
                throw QMPClientError.unexpectedReply(path: path, detail: "message longer than \(QMPClient.maxReplySize) bytes")
            }
            if let message {
                do {
                    return try JSON.parse(message)
                } catch {
                    let text = Self.abbreviate(String(decoding: message, as: UTF8.self))
                    throw QMPClientError.unexpectedReply(path: path, detail: "invalid JSON (\(error)): \(text)")
                }
            }
            guard fd >= 0 else { throw QMPClientError.connectionLost(path: path, detail: "connection closed") }
            try wait(for: Int16(POLLIN), deadline: deadline)
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }  // our own buffer, its full size
            if count > 0 {
                splitter.append(buffer[0..<count])
            } else if count == 0 {
                throw QMPClientError.connectionLost(path: path, detail: "the VM closed the connection")
            } else if errno != EINTR && errno != EAGAIN {
                throw QMPClientError.connectionLost(path: path, detail: QMPClientError.describe(errno: errno))
            }
        }
    }

    /// Sends one message, newline-terminated.
    mutating func send(_ message: JSONObject, deadline: UInt64) throws(QMPClientError) {
        guard fd >= 0 else { throw QMPClientError.connectionLost(path: path, detail: "connection closed") }
        let bytes = Array((JSON.serialize(.object(message)) + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            // MSG_NOSIGNAL: a server that went away must give EPIPE, not kill us with SIGPIPE.
            let count = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if count >= 0 {
                offset += count
            } else if errno == EAGAIN {
                try wait(for: Int16(POLLOUT), deadline: deadline)
            } else if errno != EINTR {
                throw QMPClientError.connectionLost(path: path, detail: QMPClientError.describe(errno: errno))
            }
        }
    }

    /// poll(2) until the socket is ready for `events` (or has an error/hang-up to report).
    private func wait(for events: Int16, deadline: UInt64) throws(QMPClientError) {
        while true {
            let now = clinux_monotonic_ns()
            guard now < deadline else { throw QMPClientError.timeout(path: path, seconds: timeoutSeconds) }
            let milliseconds = Int32(clamping: (deadline - now + 999_999) / 1_000_000)
            var descriptor = pollfd(fd: fd, events: events, revents: 0)
            let result = poll(&descriptor, 1, milliseconds)
            if result > 0 { return }
            if result < 0 && errno != EINTR {
                throw QMPClientError.connectionLost(path: path, detail: QMPClientError.describe(errno: errno))
            }
        }
    }

    static func abbreviate(_ value: JSONValue) -> String {
        abbreviate(JSON.serialize(value))
    }

    static func abbreviate(_ text: String, limit: Int = 80) -> String {
        text.count <= limit ? text : String(text.prefix(limit)) + "…"
    }
}
