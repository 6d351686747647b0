import Shared

/// One outgoing migration (QMP `migrate`): stop-and-copy on its own thread, so the event loop
/// keeps answering `query-migrate` while RAM is copied. On any failure the VM runs again if it
/// was running, and `query-migrate` says why.
final class OutgoingMigration {
    let uri: MigrationURI
    let mode: MigrationMode
    private unowned let machine: Machine
    private let lock = Lock()
    private var status: MigrationStatus = .setup
    private var errorDescription: String?
    private let started = monotonicNanoseconds()
    private var setupNanoseconds: UInt64 = 0
    private var finishedNanoseconds: UInt64?
    private var downtimeNanoseconds: UInt64?
    private var ramTotal: UInt64 = 0
    private var ramTransferred: UInt64 = 0
    private var channel: OutgoingMigrationChannel?
    /// Called on the loop thread when the migration ends (HMP `migrate` without -d waits on it).
    var onFinish: [(MigrationStatus, String?) -> Void] = []

    init(machine: Machine, uri: MigrationURI, mode: MigrationMode) {
        self.machine = machine
        self.uri = uri
        self.mode = mode
    }

    /// Checks what can be checked before anything changes; throws a one-line reason.
    static func preflight(uri: MigrationURI, mode: MigrationMode, machine: Machine) throws(QMPError) {
        if let job = machine.outgoingMigration, !job.currentStatus.isFinished {
            throw QMPError("There's a migration process in progress")
        }
        guard machine.runState != .inmigrate else { throw QMPError("the VM is waiting for an incoming migration") }
        if mode == .cprReboot && uri.isStreaming {
            throw QMPError("mode cpr-reboot needs a non-streaming URI (file:PATH), not \(uri)")
        }
    }

    /// Starts the migration thread; the loop thread returns at once.
    func start() throws {
        machine.emit(.migration(status: MigrationStatus.setup.rawValue))
        try spawnDetachedThread { [self] in run() }
    }

    var currentStatus: MigrationStatus { lock.withLock { status } }

    /// `migrate_cancel`: aborts the stream; the thread then fails the migration as cancelled.
    func cancel() {
        let channel: OutgoingMigrationChannel? = lock.withLock {
            guard !status.isFinished else { return nil }
            status = .cancelling
            return self.channel
        }
        channel?.cancel()
    }

    private func set(_ newStatus: MigrationStatus, error: String? = nil) {
        let changed: Bool = lock.withLock {
            // A cancel in flight turns whatever failure follows into "cancelled".
            let final = status == .cancelling && newStatus == .failed ? .cancelled : newStatus
            guard status != final else { return false }
            status = final
            if let error, final == .failed { errorDescription = error }
            if final.isFinished { finishedNanoseconds = monotonicNanoseconds() }
            return true
        }
        guard changed else { return }
        let reported = currentStatus
        let reason = lock.withLock { errorDescription }
        machine.loop.post { [machine, self] in
            machine.emit(.migration(status: reported.rawValue))
            if reported.isFinished { for callback in onFinish { callback(reported, reason) } }
        }
    }

    private func run() {
        let channel: OutgoingMigrationChannel
        do {
            channel = try OutgoingMigrationChannel(uri)
        } catch {
            set(.failed, error: "\(error)")
            return
        }
        lock.withLock {
            self.channel = channel
            setupNanoseconds = monotonicNanoseconds() - started
            ramTotal = machine.memory.blocks.filter(mode.copies).reduce(0) { $0 + $1.size }
        }
        set(.active)
        // Stop the VM (stop-and-copy) on the loop thread, where run states change.
        let wasRunning = machine.loop.sync { [machine] () -> Bool in
            let running = machine.runState == .running
            if running { machine.pause() }
            machine.runState = .finishMigrate
            if running { machine.emit(.stop) }
            return running
        }
        let paused = monotonicNanoseconds()
        do {
            let writer = try StateWriter(sink: channel)
            try machine.saveState(to: writer, copying: mode.copies, wasRunning: wasRunning) { [self] written in
                lock.withLock { ramTransferred = written }
            }
            try channel.finish()
            lock.withLock { downtimeNanoseconds = monotonicNanoseconds() - paused }
            machine.loop.sync { [machine] in machine.runState = .postmigrate }
            set(.completed)
        } catch {
            channel.cancel()
            lock.withLock { downtimeNanoseconds = monotonicNanoseconds() - paused }
            // The VM was not handed over: it continues here as if nothing happened.
            machine.loop.sync { [machine] in
                machine.runState = wasRunning ? .running : .paused
                if wasRunning {
                    machine.resume()
                    machine.emit(.resume)
                }
            }
            set(.failed, error: "\(error)")
        }
    }

    /// QEMU's MigrationInfo for `query-migrate`.
    var info: JSONObject {
        lock.withLock {
            let now = monotonicNanoseconds()
            var object: JSONObject = ["status": .string(status.rawValue)]
            object["total-time"] = .int(Int64(((finishedNanoseconds ?? now) - started) / 1_000_000))
            object["setup-time"] = .int(Int64(setupNanoseconds / 1_000_000))
            if let downtimeNanoseconds {
                object["downtime"] = .int(Int64(downtimeNanoseconds / 1_000_000))
                object["x-downtime-us"] = .int(Int64(downtimeNanoseconds / 1000))
            }
            object["ram"] = .object([
                "transferred": .int(Int64(ramTransferred)), "total": .int(Int64(ramTotal)),
                "remaining": .int(Int64(ramTotal - min(ramTotal, ramTransferred))),
            ])
            if let errorDescription { object["error-desc"] = .string(errorDescription) }
            return object
        }
    }
}
