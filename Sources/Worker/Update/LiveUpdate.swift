import CBridge
import CLinux
import Glibc
import Shared

/// The old image's half of a live update (cpr-exec): pause, save the VM state, write the CPR
/// state, and ask the Supervisor to exec the new program in this process. Runs on the loop
/// thread. The VM is only paused, never torn down, until the exec succeeds: if it fails, the
/// VM resumes here and the reason is reported (QEMU: "execvp failed").
enum LiveUpdate {
    /// The handover name of the memfd holding the VM state for a `memfd:` URI.
    static let stateFDName = Machine.storedStateName
    /// The handover name of this image's own executable, which a rollback execs (fexecve):
    /// the file at its path may be a newer binary by then (a package upgrade replaced it).
    static let previousImageFDName = "previous-image"
    /// How long the old image's address space outlives the exec: past the new image's resume
    /// (a few ms), short enough that its teardown rarely meets the next update.
    static let teardownDelayMilliseconds: UInt32 = 100

    /// Returns only if the exec did not happen; then the VM runs again as before.
    static func perform(machine: Machine, uri: MigrationURI, command: [String], arguments: [String]) -> String {
        // The watchdog's clock restarts here and the new image pings right after its resume.
        Worker.notifyService(.watchdog)
        // What needs no paused VM happens before the pause: this image's own file (for a
        // rollback), the state memfd, the MSR list, and the task that holds this image's
        // address space past the exec (it waits 100 ms; the update takes a few).
        let imageFD = open("/proc/self/exe", O_RDONLY | O_CLOEXEC)
        defer { if imageFD >= 0 { close(imageFD) } }
        var stateFD: Int32 = -1
        if uri == .memfd {
            stateFD = clinux_memfd_create("cprvmm-vm-state", CLINUX_MFD_CLOEXEC)
            guard stateFD >= 0 else { return "\(SystemError("memfd_create for the VM state", errno: -stateFD))" }
        }
        do {
            try machine.cacheMSRIndexList()
        } catch {
            if stateFD >= 0 { close(stateFD) }
            return "\(error)"
        }
        var holderStack: UnsafeMutableRawPointer?
        let holder = cbridge_spawn_teardown_holder(LiveUpdate.teardownDelayMilliseconds, &holderStack)
        if holder > 0 { machine.updateTasks.add(holder, stack: holderStack) }
        let wasRunning = machine.runState == .running
        // A running guest goes on running in vCPU bridges while this process execs and the
        // new image builds its VM (VcpuBridge); without them it stays paused all along.
        var bridge: VcpuBridge?
        if wasRunning && machine.cprExecBridges {
            do {
                bridge = try VcpuBridge.prepare(machine: machine)
            } catch {
                Log.error("live update without vCPU bridges (the guest stays paused across the exec): \(error)")
            }
        }
        // The CPR state as far as it is known before the pause: whatever would make the new
        // image (and a rollback) refuse it must refuse the update here, with the VM untouched.
        machine.updateTasks.reap()
        var cpr = CPRState(
            generation: machine.updateGeneration + 1, previousArguments: arguments, previous: Machine.currentImage,
            startedMonotonicNanoseconds: 0, pausedMonotonicNanoseconds: 0, vmStarted: machine.vmStarted,
            history: machine.updateHistory)
        cpr.fds = machine.handoverFDs
        if stateFD >= 0 { cpr.fds.append(CPRState.InheritedFD(name: LiveUpdate.stateFDName, fd: stateFD)) }
        if imageFD >= 0 { cpr.fds.append(CPRState.InheritedFD(name: LiveUpdate.previousImageFDName, fd: imageFD)) }
        if let bridge { cpr.fds.append(CPRState.InheritedFD(name: VcpuBridge.handoverName, fd: bridge.fd)) }
        cpr.teardownHolders = machine.updateTasks.pids + (bridge?.pids ?? [])
        do {
            try cpr.validate()
        } catch {
            bridge?.retire(into: machine.updateTasks)
            if stateFD >= 0 { close(stateFD) }
            return "\(error); the update is refused before the pause"
        }
        let started = monotonicNanoseconds()
        if wasRunning { machine.pause() }
        let paused = monotonicNanoseconds()
        cpr.startedMonotonicNanoseconds = started
        cpr.pausedMonotonicNanoseconds = paused
        TestStopPoint.reached("paused")
        machine.runState = .finishMigrate
        var cprFD: Int32 = -1
        let reason: String
        do {
            let throughBridge = bridge != nil
            if uri == .memfd {
                let writer = try StateWriter(sink: FileDescriptorSink(fd: stateFD))
                try machine.saveState(to: writer, copying: MigrationMode.cprExec.copies, wasRunning: wasRunning, vcpusThroughBridge: throughBridge)
            } else {
                let channel = try OutgoingMigrationChannel(uri)
                do {
                    let writer = try StateWriter(sink: channel)
                    try machine.saveState(to: writer, copying: MigrationMode.cprExec.copies, wasRunning: wasRunning, vcpusThroughBridge: throughBridge)
                    try channel.finish()
                } catch {
                    channel.cancel()
                    throw error
                }
            }
            // The device state is saved: the guest may run on, in the bridges, from here. The
            // port table is filled now, while the devices are frozen: before the pause a vCPU
            // could still have changed what a bridge may answer on its own.
            bridge?.run(ports: machine.ports.bridgePorts())
            cpr.execMonotonicNanoseconds = monotonicNanoseconds()
            cprFD = try cpr.writeToMemfd()
            if stateFD >= 0 {
                // From here until the new image resumes the guest, a crash of the process
                // leaves systemd holding all it takes to resume: RAM (stored at start), the
                // VM state, the CPR state and the bridge region, where orphaned bridges dump
                // the vCPUs before they exit (FDStoreRecovery).
                var stored: [ServiceNotification] = [.storeFD(name: Machine.storedStateName, fd: stateFD), .storeFD(name: Machine.storedCPRStateName, fd: cprFD)]
                if let bridge { stored.append(.storeFD(name: VcpuBridge.handoverName, fd: bridge.fd)) }
                Worker.notifyService(stored)
            }
            machine.releaseDeferredUpdateSignal()
            TestStopPoint.reached("saved")
            reason = Worker.execImage(ExecRequest(
                arguments: command, keepFDs: cpr.fds.map(\.fd) + [cprFD],
                environment: [(CPRState.environmentVariable, String(cprFD)),
                              (SerialBackend.savedTerminalVariable, machine.serialBackend?.savedTerminalForHandover)]))

        } catch {
            reason = "\(error)"
        }
        if cprFD >= 0 { close(cprFD) }
        // Still here: the update did not happen. The VM continues on this image, and the
        // saved state must never be resumed after the guest ran on.
        if stateFD >= 0 { retireSavedState(stateFD) }
        var failure = reason
        if let bridge {
            // The vCPU threads take their vCPUs back; KVM holds their state, so the bridges
            // only have to stop at an instruction boundary (exits served by this image).
            do {
                _ = try bridge.takeOver(machine: machine)
            } catch {
                failure += "; taking the vCPUs back from their bridges: \(error)"
            }
            bridge.retire(into: machine.updateTasks)
        }
        machine.runState = wasRunning ? .running : .paused
        if wasRunning { machine.resume() }
        if stateFD >= 0 {
            Worker.notifyService(Machine.storedUpdateNames.map { .removeStoredFD(name: $0) })
            close(stateFD)
        }
        return failure
    }

    /// Empties the VM state memfd before the guest runs again. The fd store may hold the same
    /// memfd: a process restarted from it after this point finds no state and boots fresh
    /// instead of resuming a guest whose RAM has moved on (silent corruption). Cheaper than
    /// any message to systemd, so it happens inside the pause; the FDSTOREREMOVE follows.
    static func retireSavedState(_ fd: Int32) {
        if ftruncate(fd, 0) != 0 { Log.error("cannot empty the saved VM state: \(String(cString: strerror(errno)))") }
    }
}

extension Machine {
    /// Everything the next image must inherit: RAM, listening sockets, every device's fds.
    var handoverFDs: [CPRState.InheritedFD] {
        var fds = memory.blocks.compactMap { block in block.fd.map { CPRState.InheritedFD(name: "ram:" + block.name, fd: $0) } }
        fds += monitorSocketsForHandover
        fds += devices.handoverFDs.map { CPRState.InheritedFD(name: $0.name, fd: $0.fd) }
        return fds
    }

    static var currentImage: CPRState.Image {
        CPRState.Image(path: executablePath, version: BuildInfo.version, buildID: BuildInfo.buildID)
    }
}
