import Glibc
import Shared

/// The way back after a crash in the middle of a live update. While the VM runs, systemd's fd
/// store holds the guest's RAM memfds; from the save until the new image resumes the guest,
/// it also holds the VM state, the CPR state and the vCPU bridges' region, where the bridges
/// dump the vCPUs when the process dies (LiveUpdate, VcpuBridge). If the process dies in between
/// -- say the new binary crashes as it starts -- systemd restarts the service and passes them
/// back (LISTEN_FDS), and this image resumes the guest with its memory intact.
enum FDStoreRecovery {
    /// The stored `-serial file:` console, kept for this image whatever the outcome.
    private(set) static var keptConsole: Int32?

    /// The CPR state to resume from, with its fds renumbered to the ones systemd passed; nil
    /// when the store holds no state to resume (then the stored fds are closed and dropped
    /// from the store, and the VM boots fresh).
    static func state(from stored: [CPRState.InheritedFD]) -> CPRState? {
        guard !stored.isEmpty else { return nil }
        var byName: [String: Int32] = [:]
        for entry in stored { byName[entry.name] = entry.fd }
        var used: Set<Int32> = []
        // The console file goes on whether the guest resumes or boots fresh: the log of what
        // led to the crash is the operator's first clue, and a fresh open would truncate it.
        if let console = byName[Machine.storedConsoleName] {
            used.insert(console)
            keptConsole = console
        }
        defer {
            for entry in stored where !used.contains(entry.fd) {
                close(entry.fd)
                Worker.notifyService(.removeStoredFD(name: entry.name))
            }
        }
        guard let stateFD = byName[Machine.storedStateName], let cprFD = byName[Machine.storedCPRStateName] else {
            Log.info("systemd passed back \(stored.count) stored fds but no saved VM state: the previous process died while the guest ran; booting fresh")
            return nil
        }
        var info = stat()
        guard fstat(stateFD, &info) == 0, info.st_size > 0 else {
            Log.info("systemd passed back a VM state the guest already ran past (the process died after the resume); booting fresh")
            return nil
        }
        // The record of who tried to load this state stays in the store until a guest runs
        // (RecoveryFallback); this image already wrote itself into it.
        if let record = byName[RecoveryFallback.storedName] {
            used.insert(record)
            close(record)
        }
        var cpr: CPRState
        do {
            cpr = try CPRState.read(fd: cprFD)
            // Stays in the store until the guest runs: a crash before that retries from it.
            used.insert(cprFD)
            close(cprFD)
        } catch {
            Log.error("systemd passed back a CPR state that cannot be read: \(error); booting fresh")
            return nil
        }
        // The manifest's fd numbers were the dead process's: take the stored fds by name.
        // Sockets died with that process and are created anew (they are never stored); RAM,
        // the states, the bridge region and the devices' stored files (a console) go on.
        var fds: [CPRState.InheritedFD] = []
        for entry in cpr.fds {
            let storedName = entry.name.hasPrefix("ram:") ? Machine.storedRAMName(String(entry.name.dropFirst(4))) : entry.name
            guard let fd = byName[storedName] else { continue }
            fds.append(CPRState.InheritedFD(name: entry.name, fd: fd))
            used.insert(fd)
        }
        cpr.fds = fds
        cpr.teardownHolders = []  // children of the dead process, not ours
        cpr.fromFDStore = true
        cpr.rollbackReason = "the process died before the new image resumed the guest (generation \(cpr.generation)); systemd restarted it and the guest resumed from the fd store"
        let died = RecoveryFallback.earlierAttempts.map { "version \($0.version)" }
        if !died.isEmpty { cpr.rollbackReason! += " with \(Machine.executablePath) (version \(BuildInfo.version)), after \(died.joined(separator: ", ")) died loading it" }
        cpr.rollbackReason = CPRState.clipped(cpr.rollbackReason!)
        Log.info("resuming the VM from systemd's fd store: the previous process died during live update \(cpr.generation)")
        return cpr
    }
}
