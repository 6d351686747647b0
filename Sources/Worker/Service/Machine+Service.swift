import Glibc
import Shared

/// What systemd hears from the VM: READY when the guest runs, STATUS lines, the watchdog,
/// and the fd store that lets a restarted process take the guest's RAM back.
extension Machine {
    /// Names under which the fd store keeps the guest's RAM and a live update's saved state.
    static func storedRAMName(_ block: String) -> String { "ram-" + block }
    static let storedStateName = "vm-state"
    static let storedCPRStateName = "cpr-state"
    /// What the fd store holds only during a live update (LiveUpdate, FDStoreRecovery).
    static let storedUpdateNames = [storedStateName, storedCPRStateName, VcpuBridge.handoverName, RecoveryFallback.storedName]

    /// The one line `systemctl status` shows.
    var serviceStatus: String {
        var text: String
        switch runState {
        case .running: text = "running"
        case .prelaunch: text = "created, not started (-S): cont starts the guest"
        case .inmigrate: text = "waiting for an incoming migration"
        default: text = runState.humanDescription
        }
        text += ", update generation \(updateGeneration)"
        if let last = updateHistory.last {
            let pause = Double(last.pauseMicroseconds / 100) / 10
            text += last.result == "completed" ? ", last update paused the guest \(pause) ms" : ", last update: \(last.result)"
        }
        return text
    }

    /// READY=1 with the status (and a watchdog ping): the start, restore or update is done.
    func reportReadyToService() {
        Worker.notifyService(.ready(status: serviceStatus), .watchdog)
    }

    /// The `-serial file:` console also goes to the store: a restarted process appends to it
    /// where the dead one stopped instead of truncating it.
    static let storedConsoleName = SerialBackend.fileHandoverName

    /// Keeps the guest's RAM (and the devices' files: a console) in systemd's fd store, so a process that
    /// dies after a live update saved its state can be restarted with guest memory intact.
    /// Harmless when repeated: systemd ignores an fd it already stores.
    func storeFDsWithService() {
        guard Worker.serviceManager != nil else { return }
        var stored = memory.blocks.compactMap { block in
            block.fd.map { ServiceNotification.storeFD(name: Machine.storedRAMName(block.name), fd: $0) }
        }
        stored += devices.storedFDs.map { ServiceNotification.storeFD(name: $0.name, fd: $0.fd) }
        Worker.serviceManager?.notify(stored)
    }

    /// After an orderly end the next start must boot fresh: empty the fd store.
    func emptyServiceFDStore() {
        guard Worker.serviceManager != nil else { return }
        var names = memory.blocks.map { Machine.storedRAMName($0.name) }
        names += Machine.storedUpdateNames + devices.storedFDs.map(\.name)
        Worker.serviceManager?.notify(names.map { .removeStoredFD(name: $0) })
    }

    /// WATCHDOG=1 at half the unit's WatchdogSec=, from the event loop: a loop that stops
    /// turning stops the pings. A live update pings right before its exec and the new image
    /// right after its resume.
    func startServiceWatchdog() throws {
        guard let microseconds = Worker.serviceManager?.watchdogMicroseconds else { return }
        let interval = max(1, Int(microseconds / 2000))
        try loop.addTimer(intervalMilliseconds: interval) { Worker.notifyService(.watchdog) }
    }

    /// Called every second: while an incoming migration loads, tell systemd the start job is
    /// still making progress, so TimeoutStartSec= does not kill a large restore.
    func extendServiceTimeoutIfBusy() {
        guard runState == .inmigrate, incomingMigration != nil else { return }
        Worker.notifyService(.extendTimeout(microseconds: 10_000_000))
    }

    /// STATUS= follows stop / cont and migrations.
    func followRunStateForService() {
        guard Worker.serviceManager != nil else { return }
        eventListeners.append { [unowned self] event in
            switch event {
            case .stop, .resume, .migration, .migrationPass: Worker.notifyService(.status(serviceStatus))
            case .shutdown: break
            }
        }
    }
}
