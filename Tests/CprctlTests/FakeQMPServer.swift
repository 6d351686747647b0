import Foundation
import Glibc
import Shared

/// A QMP server on a UNIX socket, played by the test: it serves one client, greets it,
/// accepts qmp_capabilities, and asks `respond` what to send for every other command.
final class FakeQMPServer: @unchecked Sendable {
    enum Send {
        /// `{"return": VALUE, "id": ...}` with the command's id.
        case reply(JSONValue)
        /// A GenericError with this description.
        case error(String)
        /// `{"event": NAME, "data": DATA, "timestamp": ...}`.
        case event(String, JSONValue)
        /// Closes the connection (the VMM exits).
        case close
    }

    let path: String
    private let listener: Int32
    private let lock = NSLock()
    private var received: [(name: String, arguments: JSONValue?)] = []
    private let finished = DispatchSemaphore(value: 0)

    /// The commands the client sent after qmp_capabilities, in order.
    var commands: [(name: String, arguments: JSONValue?)] { lock.withLock { received } }
    var commandNames: [String] { commands.map(\.name) }

    init(directory: TemporaryDirectory, respond: @escaping (String, JSONValue?) -> [Send]) {
        path = directory.path + "/qmp.sock"
        listener = bindUnixSocket(path)
        precondition(listener >= 0 && listen(listener, 1) == 0, "cannot listen on \(path)")
        Thread.detachNewThread { [self] in
            serve(respond)
            finished.signal()
        }
    }

    deinit { close(listener) }

    /// Waits until the client is gone or the server closed the connection.
    func waitUntilDone(seconds: Double = 10) -> Bool {
        finished.wait(timeout: .now() + seconds) == .success
    }

    private func serve(_ respond: (String, JSONValue?) -> [Send]) {
        let fd = accept(listener, nil, nil)
        guard fd >= 0 else { return }
        defer { close(fd) }
        func send(_ value: JSONValue) {
            let line = JSON.serialize(value) + "\n"
            _ = line.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        }
        send(["QMP": ["version": ["qemu": ["major": 8, "minor": 2, "micro": 0], "package": "fake"], "capabilities": []]])
        var pending = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(fd, &buffer, buffer.count)
            guard count > 0 else { return }
            pending += buffer[0..<count]
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(pending[..<newline])
                pending.removeFirst(newline + 1)
                guard let message = try? JSON.parse(line), let name = message["execute"]?.stringValue else { continue }
                let id = message["id"] ?? .null
                if name == "qmp_capabilities" {
                    send(["return": [:], "id": id])
                    continue
                }
                lock.withLock { received.append((name, message["arguments"])) }
                for action in respond(name, message["arguments"]) {
                    switch action {
                    case .reply(let value): send(["return": value, "id": id])
                    case .error(let desc): send(["error": ["class": "GenericError", "desc": .string(desc)], "id": id])
                    case .event(let event, let data):
                        send(["event": .string(event), "data": data, "timestamp": ["seconds": 1, "microseconds": 0]])
                    case .close: return
                    }
                }
            }
        }
    }
}
