import Shared

/// The human monitor on stdio or a UNIX socket: a banner, the `(cprvmm) ` prompt, one command
/// per line. Several socket clients may be connected at once.
final class HMPServer {
    static let prompt = "(cprvmm) "
    static let maxLineLength = 4096

    private unowned let machine: Machine
    private var server: SocketServer?
    private var sessions: [ObjectIdentifier: Session] = [:]

    private final class Session {
        let connection: StreamConnection
        var line: [UInt8] = []
        /// Complete lines not yet run, and whether a command is still running.
        var queued: [String] = []
        var busy = false
        init(_ connection: StreamConnection) { self.connection = connection }
    }

    var listenFD: Int32? { server?.listenFD }
    var path: String? { server?.path }

    init(_ config: MonitorConfig, machine: Machine, inherited: Int32? = nil) throws {
        self.machine = machine
        switch config {
        case .stdio:
            try attach(StreamConnection(stdioOn: machine.loop))
        case .unixServer(let path):
            server = try SocketServer(path: path, context: "-monitor unix:\(path)", loop: machine.loop, inherited: inherited) { [unowned self] connection in
                try? attach(connection)
            }
        }
    }

    private func attach(_ connection: StreamConnection) throws {
        let session = Session(connection)
        let key = ObjectIdentifier(session)
        connection.onData = { [unowned self, unowned session] bytes in receive(bytes, in: session) }
        connection.onClose = { [unowned self] in machine.loop.post { [unowned self] in sessions[key] = nil } }
        sessions[key] = session
        try connection.start()
        connection.send("cprvmm \(BuildInfo.version) monitor - type 'help' for more information\n" + HMPServer.prompt)
    }

    private func receive(_ bytes: UnsafeRawBufferPointer, in session: Session) {
        for byte in bytes {
            guard !session.connection.isClosed else { return }
            switch byte {
            case UInt8(ascii: "\n"):
                session.queued.append(String(decoding: session.line, as: UTF8.self))
                session.line.removeAll(keepingCapacity: true)
            case UInt8(ascii: "\r"):
                continue
            default:
                guard session.line.count < HMPServer.maxLineLength else {
                    session.connection.send("\nline too long (limit \(HMPServer.maxLineLength) bytes); closing the connection\n")
                    session.connection.close()
                    return
                }
                session.line.append(byte)
            }
        }
        runQueued(in: session)
    }

    /// Runs queued lines in order. A command that finishes later (migrate without -d) holds
    /// the queue until it is done, as QEMU's monitor does not read input meanwhile.
    private func runQueued(in session: Session) {
        while !session.busy, !session.queued.isEmpty, !session.connection.isClosed {
            let text = session.queued.removeFirst()
            let output = HumanMonitor(machine: machine).execute(text) { [weak self, weak session] later in
                guard let self, let session else { return }
                session.busy = false
                session.connection.send(later + HMPServer.prompt)
                runQueued(in: session)
            }
            if let output {
                session.connection.send(output + HMPServer.prompt)
            } else {
                session.busy = true
            }
        }
    }
}
