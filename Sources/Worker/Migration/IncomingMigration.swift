import CLinux
import Shared

/// The receiving side (`-incoming URI`, or `-incoming defer` + `migrate-incoming`): waits for
/// the stream on the event loop, loads it on its own thread, then starts the VM as the source
/// had it (running or paused). A stream this VM cannot take ends the process with the reason,
/// as QEMU does: a half-loaded VM must never run.
final class IncomingMigration {
    let uri: MigrationURI
    private unowned let machine: Machine
    private var channel: IncomingMigrationChannel?
    private let lock = Lock()
    private var status: MigrationStatus = .setup
    private let started = monotonicNanoseconds()
    private var finishedNanoseconds: UInt64?

    init(machine: Machine, uri: MigrationURI) {
        self.machine = machine
        self.uri = uri
    }

    /// Opens the channel; a stream that must be waited for is accepted from the event loop.
    func start() throws {
        let channel = try IncomingMigrationChannel(uri)
        self.channel = channel
        machine.emit(.migration(status: MigrationStatus.setup.rawValue))
        guard let listening = channel.listeningFD else {
            try spawnDetachedThread { [self] in load(from: channel) }
            return
        }
        try machine.loop.add(listening, events: CLINUX_EPOLLIN) { [self, unowned machine] _ in
            machine.loop.remove(listening)
            do {
                try channel.acceptPeer()
                try spawnDetachedThread { [self] in load(from: channel) }
            } catch {
                fail("\(error)")
            }
        }
    }

    var currentStatus: MigrationStatus { lock.withLock { status } }

    var info: JSONObject {
        lock.withLock {
            ["status": .string(status.rawValue),
             "total-time": .int(Int64(((finishedNanoseconds ?? monotonicNanoseconds()) - started) / 1_000_000))]
        }
    }

    private func load(from channel: IncomingMigrationChannel) {
        lock.withLock { status = .active }
        machine.loop.post { [machine] in machine.emit(.migration(status: MigrationStatus.active.rawValue)) }
        do {
            let reader = try StateReader(source: channel)
            let loader = StateLoader(machine: machine)
            let description = try loader.load(from: reader)
            guard !loader.vcpusThroughBridge else {
                throw ConfigurationError("this state was saved for a live update of its own process (its vCPUs ran on in vCPU bridges); only that process can load it")
            }
            // The source stops for good only on this: until then it may still run the guest.
            TestStopPoint.reached("incoming-loaded")
            channel.acknowledgeLoaded()
            channel.close()
            machine.loop.post { [self, machine] in
                lock.withLock {
                    status = .completed
                    finishedNanoseconds = monotonicNanoseconds()
                }
                machine.vmStarted = description.vmStarted
                machine.emit(.migration(status: MigrationStatus.completed.rawValue))
                if description.wasRunning && !machine.config.startPaused {
                    machine.runState = .running
                    machine.resume()
                    machine.emit(.resume)
                } else {
                    machine.runState = .paused
                }
                machine.reportReadyToService()
                machine.storeFDsWithService()
            }
        } catch {
            channel.close()
            fail("\(error)")
        }
    }

    private func fail(_ reason: String) {
        lock.withLock {
            status = .failed
            finishedNanoseconds = monotonicNanoseconds()
        }
        machine.loop.post { [machine] in machine.emit(.migration(status: MigrationStatus.failed.rawValue)) }
        machine.requestExit(status: 1, reason: "incoming migration from \(uri) failed: \(reason)")
    }
}
