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
