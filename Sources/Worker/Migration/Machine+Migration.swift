import Shared

/// Migration entry points for the monitors. Loop thread only.
extension Machine {
    func startIncomingMigration(_ uri: MigrationURI) throws {
        let job = IncomingMigration(machine: self, uri: uri)
        incomingMigration = job
        try job.start()
    }

    /// QMP `migrate` / HMP `migrate`: checks, then starts the migration thread, or for
    /// cpr-exec schedules the live update right after the command's reply went out.
    @discardableResult
    func startOutgoingMigration(_ uri: MigrationURI) throws(QMPError) -> OutgoingMigration? {
        if migrationMode == .cprExec {
            try startLiveUpdate(uri: uri, command: cprExecCommand)
            return nil
        }
        try OutgoingMigration.preflight(uri: uri, mode: migrationMode, machine: self)
        let job = OutgoingMigration(machine: self, uri: uri, mode: migrationMode)
        outgoingMigration = job
        do {
            try job.start()
        } catch {
            throw QMPError("cannot start the migration: \(error)")
        }
        return job
    }

    /// Under systemd a VM whose guest now runs on another host has nothing left to do: the
    /// unit stops cleanly (exit 0, fd store emptied, no restart) a second after the migration
    /// completed, so a client following query-migrate sees "completed" first. Outside systemd
    /// the VMM stays in postmigrate, as QEMU does, until told to quit.
    func migrationCompleted(to uri: MigrationURI) {
        guard Worker.serviceManager != nil else { return }
        Worker.notifyService(.status("migrated to \(uri): the guest runs there now; stopping"))
        do {
            _ = try loop.addTimeout(milliseconds: 1000) { [unowned self] in
                requestExit(status: 0, reason: "migrated to \(uri): the guest runs there now; this unit stops", cause: "host-qmp-quit", state: .postmigrate)
            }
        } catch {
            requestExit(status: 0, reason: "migrated to \(uri): the guest runs there now; this unit stops", cause: "host-qmp-quit", state: .postmigrate)
        }
    }

    /// New parameters or capabilities; a migration under way takes the parameters at once.
    func setMigrationSettings(_ settings: MigrationSettings) {
        migrationSettings = settings
        if let job = outgoingMigration, !job.currentStatus.isFinished { job.update(settings) }
    }

    /// QMP `migrate-incoming`: only for a VM started with `-incoming defer`.
    func startDeferredIncoming(_ uri: MigrationURI) throws(QMPError) {
        guard config.incoming == .deferred, runState == .inmigrate else {
            throw QMPError("The incoming migration has already been started or was not requested with -incoming defer")
        }
        guard incomingMigration == nil else { throw QMPError("The incoming migration has already been started") }
        do {
            try startIncomingMigration(uri)
        } catch {
            incomingMigration = nil
            throw QMPError("\(error)")
        }
    }

    /// QEMU's MigrationInfo: the outgoing migration, else the incoming one, else {}.
    var migrationInfo: JSONObject {
        if let outgoingMigration { return outgoingMigration.info }
        if let liveUpdateInfo { return liveUpdateInfo }
        if let incomingMigration { return incomingMigration.info }
        return [:]
    }
}
