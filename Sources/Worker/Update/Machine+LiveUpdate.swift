import Glibc
import Shared

/// Where a live update starts: QMP/HMP `migrate` in mode cpr-exec, and SIGHUP (systemd's
/// reload). Loop thread only.
extension Machine {
    /// Checks everything, tells systemd a reload started, and runs the update right after
    /// the current loop iteration (so a monitor's reply goes out before the exec).
    func startLiveUpdate(uri: MigrationURI, command: [String]) throws(QMPError) {
        if liveUpdatePending { throw QMPError("a live update is already in progress") }
        if let job = outgoingMigration, !job.currentStatus.isFinished { throw QMPError("There's a migration process in progress") }
        let path = try CPRExecPreflight.check(machine: self, uri: uri, command: command)
        liveUpdatePending = true
        Worker.notifyService(.reloading(status: "live update: exec \(command[0])"))
        guard cprExecProbe else {
            loop.post { [self] in runLiveUpdate(uri: uri, command: command) }
            return
        }
        // The probe runs while the guest runs and the loop serves; the update follows when it
        // answered (a few ms for a cprvmm), or is refused with its answer.
        do {
            let probe = try CPRExecProbe.start(command: command, path: path, bridges: cprExecBridges, loop: loop) { [self] refusal in
                probeAnswered(refusal, uri: uri, command: command)
            }
            liveUpdateProbe = probe
        } catch {
            liveUpdatePending = false
            Worker.notifyService(.ready(status: "\(serviceStatus), live update refused: \(error)"))
            throw QMPError("cpr-exec-command: \(error); the VM keeps running")
        }
    }

    private func probeAnswered(_ refusal: String?, uri: MigrationURI, command: [String]) {
        liveUpdateProbe = nil
        if let refusal {
            liveUpdateFailed(refusal)
        } else {
            runLiveUpdate(uri: uri, command: command)
        }
    }

    private func runLiveUpdate(uri: MigrationURI, command: [String]) {
        // A SIGTERM or quit taken between the request and now wins: an exec would carry
        // on a VM that systemd (or the operator) is stopping, and the request is consumed.
        guard !isExiting else {
            liveUpdatePending = false
            Log.info("live update dropped: the VM is shutting down")
            return
        }
        let reason = LiveUpdate.perform(machine: self, uri: uri, command: command, arguments: CommandLine.arguments)
        // Still here: the update did not happen and the VM runs on this image again.
        liveUpdateFailed(reason)
    }

    /// The update did not happen (refused by the probe, or it failed before or at the exec):
    /// the VM runs on this image, and every observer hears why.
    private func liveUpdateFailed(_ reason: String) {
        liveUpdatePending = false
        Log.error("live update failed, the VM continues on this image: \(reason)")
        liveUpdateInfo = ["status": "failed", "error-desc": .string(reason)]
        liveUpdateFailures += 1
        outgoingMigration = nil
        emit(.migration(status: MigrationStatus.failed.rawValue))
        Worker.notifyService(.ready(status: "\(serviceStatus), live update failed: \(reason)"))
        releaseDeferredUpdateSignal()
    }

    /// SIGHUP: a live update with the configured command, or by default the same program
    /// (found again through PATH if it was named without a slash, so an upgraded package is
    /// picked up) and the same arguments, the state in a memfd.
    ///
    /// A SIGHUP that arrives while an update is under way is neither lost nor merged into it:
    /// exactly one more update follows, on whichever image runs the VM then (the signal is
    /// raised again before the exec and stays pending across it, blocked; pending SIGHUPs
    /// merge into one, as the kernel merges them).
    func liveUpdateOnSignal() {
        if liveUpdatePending {
            Log.info("SIGHUP during a live update: another update follows it")
            updateSignalDeferred = true
            return
        }
        let (command, uri) = signalledUpdateCommand
        Log.info("SIGHUP: live update to \(command.joined(separator: " "))")
        do {
            try startLiveUpdate(uri: uri, command: command)
        } catch {
            Log.error("SIGHUP: live update refused: \(error)")
            liveUpdateInfo = ["status": "failed", "error-desc": .string("\(error)")]
            liveUpdateFailures += 1
            // Type=notify-reload waits for RELOADING=1 then READY=1 after its signal.
            Worker.notifyService(.reloading(status: "live update refused"), .ready(status: "\(serviceStatus), live update refused: \(error)"))
        }
    }

    /// `migrate-set-parameters cpr-exec-command` when set with mode cpr-exec (its -incoming
    /// URI is the state's), else this image's program and arguments with `-incoming memfd:`.
    var signalledUpdateCommand: ([String], MigrationURI) {
        if migrationMode == .cprExec, !cprExecCommand.isEmpty {
            if let text = IncomingOption.value(in: cprExecCommand), let uri = try? MigrationURI.parse(text) {
                return (cprExecCommand, uri)
            }
            return (cprExecCommand + ["-incoming", "memfd:"], .memfd)
        }
        let arguments = CommandLine.arguments
        return ([arguments[0]] + IncomingOption.removed(from: Array(arguments.dropFirst())) + ["-incoming", "memfd:"], .memfd)
    }

    /// Raises the SIGHUP that arrived during an update again, now that the update is over
    /// or about to exec (the signal is blocked: it waits for the next signalfd read).
    func releaseDeferredUpdateSignal() {
        guard updateSignalDeferred else { return }
        updateSignalDeferred = false
        kill(getpid(), SIGHUP)
    }
}
