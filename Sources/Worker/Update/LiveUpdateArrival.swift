import Glibc
import Shared

/// The new image's half of a live update: load the VM state the previous image saved, resume
/// the guest, and record the update. If anything fails before the guest runs, the new image
/// does not die: it execs back into the previous image (rollback), which loads the same state.
enum LiveUpdateArrival {
    static let injectFailureVariable = "CPRVMM_INJECT_LOAD_FAILURE"
    static let historyLimit = 16

    /// The CPR state a previous image left in this process, if any. Its fds become
    /// close-on-exec again at once; the memfd holding it is closed.
    static func takeInheritedState() -> Result<CPRState, Error>? {
        guard let text = getenv(CPRState.environmentVariable).map({ String(cString: $0) }) else { return nil }
        unsetenv(CPRState.environmentVariable)
        guard let fd = Int32(text), fd >= 0 else {
            return .failure(ConfigurationError("\(CPRState.environmentVariable)=\(text) is not a file descriptor"))
        }
        defer { close(fd) }
        do {
            let state = try CPRState.read(fd: fd)
            for entry in state.fds { _ = fcntl(entry.fd, F_SETFD, FD_CLOEXEC) }
            return .success(state)
        } catch {
            return .failure(error)
        }
    }

    /// Loads the state, resumes, records. Loop not yet running; vCPU threads started, paused.
    static func complete(_ cpr: CPRState, machine: Machine) throws {
        guard case .uri(let uri) = machine.config.incoming else {
            throw ConfigurationError("the new command line has no -incoming URI to load the VM state from")
        }
        if let problem = cpr.unreadableRecord {
            throw ConfigurationError("cannot read the update record the previous image left: \(problem)")
        }
        if cpr.rollbackReason == nil, getenv(injectFailureVariable) != nil {
            throw ConfigurationError("load failure injected by \(injectFailureVariable)")
        }
        TestStopPoint.crashIfRequested("load")
        let loadStarted = monotonicNanoseconds()
        let loader = StateLoader(machine: machine)
        let description: MachineDescription
        if uri == .memfd {
            guard let fd = cpr.fd(named: LiveUpdate.stateFDName) else {
                throw ConfigurationError("-incoming memfd: but the previous image handed over no state memfd")
            }
            // Read from the start; the fd stays open for a rollback and is closed after resume.
            guard lseek(fd, 0, SEEK_SET) == 0 else { throw SystemError("lseek on the state memfd", errno: errno) }
            description = try loader.load(from: StateReader(source: FileDescriptorSource(fd: fd)))
        } else {
            let channel = try IncomingMigrationChannel(uri)
            defer { channel.close() }
            description = try loader.load(from: StateReader(source: channel))
        }
        let loaded = monotonicNanoseconds()
        StartupTrace.mark("load")
        if !cpr.fromFDStore { TestStopPoint.reached("loaded") }
        // With vCPU bridges the guest runs on until the bridges are told to stop.
        var bridge: VcpuBridge?
        var stopRequested = loaded
        var fatalExits: [(vcpu: Int, exit: VcpuExit)] = []
        if loader.vcpusThroughBridge {
            guard let fd = cpr.fd(named: VcpuBridge.handoverName) else {
                throw ConfigurationError("the state says the vCPUs run in vCPU bridges, but the previous image handed over no '\(VcpuBridge.handoverName)'")
            }
            let attached = try VcpuBridge.attach(fd: fd)
            stopRequested = monotonicNanoseconds()
            // After a crash the bridges are gone (they dumped and exited before systemd
            // restarted the service): their pids may be anyone's now, so no kick.
            let taken = try attached.takeOver(machine: machine, kick: !cpr.fromFDStore)
            for (index, state) in taken.vcpus.enumerated() { try state.restore(to: machine.vcpus[index].vcpu) }
            try taken.platform.restore(to: machine.vm)
            fatalExits = taken.fatalExits
            bridge = attached
            StartupTrace.mark("bridge handover")
        }
        if !cpr.fromFDStore { TestStopPoint.reached("handover") }
        let handedOver = monotonicNanoseconds()
        if let fd = cpr.fd(named: LiveUpdate.stateFDName) { LiveUpdate.retireSavedState(fd) }
        if description.wasRunning && !machine.config.startPaused {
            machine.runState = .running
            machine.resume()
        } else {
            machine.runState = .paused
        }
        let resumed = monotonicNanoseconds()
        StartupTrace.mark("resume")
        // Everything below happens after the guest runs again: it is outside the pause.
        // The bridges exit; the CPR state lists them with the teardown holders, for reaping.
        bridge?.release()
        for (index, exit) in fatalExits { _ = machine.handle(exit, on: machine.vcpus[index].vcpu) }
        machine.vmStarted = cpr.vmStarted
        let pause: UInt64
        let marks: [(String, UInt64)]
        if let bridge {
            // Two short pauses: the old image handing the vCPUs to the bridges, and this
            // handover; between them the guest ran while the process exec'd and built the VM.
            // A vCPU that stopped at an exit only an image can serve waited from then on.
            let guestResumed = max(bridge.guestResumedNanoseconds, cpr.pausedMonotonicNanoseconds)
            let secondPause = min(stopRequested, max(bridge.firstStallNanoseconds ?? stopRequested, guestResumed))
            pause = ((guestResumed - cpr.pausedMonotonicNanoseconds) + (resumed - min(resumed, secondPause))) / 1000
            marks = [
                ("pause vcpus", cpr.pausedMonotonicNanoseconds), ("save and hand to bridges", guestResumed),
                ("guest runs during exec and vm creation", secondPause),
                ("a vcpu waits for the handover", stopRequested), ("bridge handover", handedOver), ("resume", resumed),
            ]
        } else {
            pause = (resumed - min(resumed, cpr.pausedMonotonicNanoseconds)) / 1000
            marks = [
                ("pause vcpus", cpr.pausedMonotonicNanoseconds), ("save", cpr.execMonotonicNanoseconds),
                ("exec and runtime start", ProcessClock.imageStartedMonotonic), ("vm creation", loadStarted),
                ("load", loaded), ("resume", resumed),
            ]
        }
        let total = (resumed - min(resumed, cpr.startedMonotonicNanoseconds)) / 1000
        let result = CPRState.clipped(rollbackReason(cpr).map { "rolled back: \($0)" } ?? "completed")
        var record = CPRState.Update(
            generation: cpr.generation, from: cpr.previous, to: Machine.currentImage,
            pauseMicroseconds: pause, totalMicroseconds: total, result: result, time: ProcessClock.now())
        var previous = cpr.startedMonotonicNanoseconds
        for (name, mark) in marks {
            record.phases.append((name, (max(mark, previous) - previous) / 1000))
            previous = max(mark, previous)
        }
        machine.updateHistory = Array((cpr.history + [record]).suffix(historyLimit))
        machine.updateGeneration = cpr.rollbackReason == nil ? cpr.generation : cpr.generation - 1
        if let reason = rollbackReason(cpr) {
            machine.liveUpdateInfo = ["status": "failed", "error-desc": .string("rolled back: \(reason)")]
            Log.error("live update rolled back, the VM runs on \(Machine.executablePath) again: \(reason)")
        } else {
            machine.liveUpdateInfo = [
                "status": "completed", "mode": "cpr-exec", "downtime": .int(Int64(pause / 1000)),
                "x-downtime-us": .int(Int64(pause)), "total-time": .int(Int64(total / 1000)),
            ]
            let phases = record.phases.map { "\($0.name) \(Double($0.microseconds) / 1000)" }.joined(separator: ", ")
            Log.info("live update \(cpr.generation) complete: \(cpr.previous.version) -> \(BuildInfo.version), guest paused \(Double(pause) / 1000) ms, total \(Double(total) / 1000) ms")
            Log.debug("live update \(cpr.generation) phases (ms): \(phases)")
        }
        closeUnused(cpr, machine: machine)
        machine.reportReadyToService()
        Worker.notifyService(Machine.storedUpdateNames.map { .removeStoredFD(name: $0) })
        if cpr.fromFDStore { machine.storeFDsWithService() }
        machine.logMemorySummary()
        if let trace = StartupTrace.report() { Log.info(trace) }
        machine.updateTasks.adopt(cpr.teardownHolders)
    }

    /// Why the update rolled back, with the way out when the new binary predates vCPU bridges
    /// (its loader names the section it does not know; the reason is its words).
    static func rollbackReason(_ cpr: CPRState) -> String? {
        guard let reason = cpr.rollbackReason else { return nil }
        guard reason.contains("unknown section '\(VcpuBridge.sectionName)'") else { return reason }
        return reason + " (that cprvmm predates vCPU bridges: update to it with the guest paused across the exec, `cprctl update --no-bridges` or migrate-set-parameters x-cpr-exec-bridges=false)"
    }

    /// The new image could not resume the guest: roll back to the previous image, or, for a
    /// state taken from the fd store, give up on it so the next start boots fresh (a restart
    /// loop on a state that cannot load would keep the service down). Returns what to log.
    static func failed(_ cpr: CPRState, reason: String, incoming: MigrationURI?) -> String {
        guard cpr.fromFDStore else { return rollBack(cpr, reason: reason, incoming: incoming) }
        if let fd = cpr.fd(named: LiveUpdate.stateFDName) { LiveUpdate.retireSavedState(fd) }
        Worker.notifyService(Machine.storedUpdateNames.map { .removeStoredFD(name: $0) })
        return "cannot resume the VM from systemd's fd store: \(reason); the saved state is dropped and the next start boots the VM fresh"
    }

    /// Inherited fds the new configuration has no use for are closed: nothing leaks.
    private static func closeUnused(_ cpr: CPRState, machine: Machine) {
        let inUse = Set(machine.handoverFDs.map(\.fd))
        for entry in cpr.fds where !inUse.contains(entry.fd) { close(entry.fd) }
    }

    /// Execs the previous image with the same state and the reason. Returns only if that
    /// exec failed too; then nothing can resume the VM and the caller must exit.
    static func rollBack(_ cpr: CPRState, reason: String, incoming: MigrationURI?) -> String {
        guard cpr.rollbackReason == nil else {
            return "the rollback image cannot load the state either: \(reason) (after: \(cpr.rollbackReason!))"
        }
        guard let incoming else { return "cannot roll back without the state's URI: \(reason)" }
        var state = cpr
        state.rollbackReason = CPRState.clipped("\(Machine.executablePath) (version \(BuildInfo.version), build id \(BuildInfo.buildID)) could not load the state: \(reason)")
        let arguments = IncomingOption.removed(from: cpr.previousArguments) + ["-incoming", incoming.description]
        Log.error("live update failed in the new image: \(reason); rolling back to \(cpr.previous.path)")
        do {
            for entry in cpr.fds { _ = fcntl(entry.fd, F_SETFD, FD_CLOEXEC) }
            let fd = try state.writeToMemfd()
            // The previous image's own file, not its path: a package upgrade may have put the
            // binary that just failed at that path.
            let failure = Worker.execImage(ExecRequest(
                arguments: arguments, keepFDs: cpr.fds.map(\.fd) + [fd],
                environment: [(CPRState.environmentVariable, String(fd)), (injectFailureVariable, nil)],
                executableFD: cpr.fd(named: LiveUpdate.previousImageFDName)))
            close(fd)
            return "rollback to \(cpr.previous.path) failed: \(failure) (the update failed because: \(reason))"
        } catch {
            return "rollback failed: \(error) (the update failed because: \(reason))"
        }
    }
}
