import Shared

/// A QMP server on one UNIX socket, speaking QEMU's wire protocol: a greeting, capabilities
/// negotiation, commands with `arguments` and an echoed `id`, errors with QEMU's classes, and
/// asynchronous events with QEMU's timestamps. Any number of clients; all on the loop thread,
/// so a client can never block a vCPU. A malformed or hostile client gets an error or is
/// disconnected; the VM keeps running either way.
final class QMPServer {
    /// Larger requests are refused and the client disconnected (QEMU's limit is similar).
    static let maxMessageSize = 1 << 20

    private unowned let machine: Machine
    private var server: SocketServer?
    private var clients: [ObjectIdentifier: Client] = [:]

    private final class Client {
        let connection: StreamConnection
        var splitter = JSONStreamSplitter(maxMessageSize: QMPServer.maxMessageSize)
        var negotiated = false
        init(_ connection: StreamConnection) { self.connection = connection }
    }

    var listenFD: Int32? { server?.listenFD }
    let path: String

    init(path: String, machine: Machine, inherited: Int32? = nil) throws {
        self.machine = machine
        self.path = path
        server = try SocketServer(path: path, context: "-qmp unix:\(path)", loop: machine.loop, inherited: inherited) { [unowned self] connection in
            accept(connection)
        }
        machine.eventListeners.append { [unowned self] event in broadcast(event) }
    }

    private func accept(_ connection: StreamConnection) {
        let client = Client(connection)
        let key = ObjectIdentifier(client)
        connection.onData = { [unowned self, unowned client] bytes in receive(bytes, from: client) }
        // Forget the client after the current handler returns: it may still be on the stack.
        connection.onClose = { [unowned self] in machine.loop.post { [unowned self] in clients[key] = nil } }
        clients[key] = client
        do { try connection.start() } catch { connection.close(); return }
        send(["QMP": .object(["version": QMPCommands.versionReply, "capabilities": .array([])])], to: client)
    }

    private func receive(_ bytes: UnsafeRawBufferPointer, from client: Client) {
        client.splitter.append(bytes)
        while !client.connection.isClosed {
            let message: [UInt8]?
            do {
                message = try client.splitter.next()
            } catch {
                send(["error": QMPError("JSON message too large (limit \(QMPServer.maxMessageSize) bytes); closing the connection").json], to: client)
                client.connection.close()
                return
            }
            guard let message else { return }
            handle(message, from: client)
        }
    }

    private func handle(_ message: [UInt8], from client: Client) {
        switch QMPRequest.decode(message, negotiated: client.negotiated) {
        case .refused(let error, let id):
            reply(.failure(error), id: id, to: client)
        case .negotiate(let id):
            client.negotiated = true
            reply(.success(.object([:])), id: id, to: client)
        case .command(let command, let arguments, let id):
            do {
                reply(.success(try command.handler(machine, arguments)), id: id, to: client)
            } catch let error as QMPError {
                reply(.failure(error), id: id, to: client)
            } catch {
                reply(.failure(QMPError("\(error)")), id: id, to: client)
            }
        }
    }

    private func reply(_ result: Result<JSONValue, QMPError>, id: JSONValue?, to client: Client) {
        var message: JSONObject
        switch result {
        case .success(let value): message = ["return": value]
        case .failure(let error): message = ["error": error.json]
        }
        if let id { message["id"] = id }
        send(message, to: client)
    }

    private func send(_ message: JSONObject, to client: Client) {
        client.connection.send(JSON.serialize(.object(message)) + "\r\n")
    }

    /// Events go to negotiated clients only, as in QEMU.
    private func broadcast(_ event: MachineEvent) {
        let time = ProcessClock.now()
        let seconds = time.rounded(.down)
        var message: JSONObject = [:]
        switch event {
        case .stop: message["event"] = "STOP"
        case .resume: message["event"] = "RESUME"
        case .shutdown(let guest, let reason):
            message["event"] = "SHUTDOWN"
            message["data"] = .object(["guest": .bool(guest), "reason": .string(reason)])
        case .migration(let status):
            message["event"] = "MIGRATION"
            message["data"] = .object(["status": .string(status)])
        case .migrationPass(let pass):
            message["event"] = "MIGRATION_PASS"
            message["data"] = .object(["pass": .int(Int64(pass))])
        }
        message["timestamp"] = .object(["seconds": .int(Int64(seconds)), "microseconds": .int(Int64((time - seconds) * 1e6))])
        for client in clients.values where client.negotiated { send(message, to: client) }
    }
}
