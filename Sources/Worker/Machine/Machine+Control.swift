import Glibc
import Shared

/// What the monitors can do to the VM and learn about it. Loop thread only.
extension Machine {
    public enum ControlError: Error, CustomStringConvertible {
        case notRunnable(RunState)

        public var description: String {
            switch self {
            case .notRunnable(.inmigrate):
                return "the VM is waiting for an incoming migration; it starts when the migration completes"
            case .notRunnable(.finishMigrate):
                return "a migration is saving the VM; wait for it to complete or cancel it"
            case .notRunnable(let state):
                return "the VM is in state \(state.rawValue) and cannot be resumed; it is shutting down"
            }
        }
    }

    /// `stop`: pauses every vCPU (returns once all are out of KVM_RUN). A no-op unless running.
    public func stopVM() {
        guard runState == .running else { return }
        pause()
        runState = .paused
        emit(.stop)
    }

    /// `cont`: resumes a paused VM, or starts one created with -S.
    public func continueVM() throws(ControlError) {
        switch runState {
        case .running:
            return
        case .paused, .prelaunch, .postmigrate:
            runState = .running
            resume()
            emit(.resume)
        case .shutdown, .internalError, .inmigrate, .finishMigrate:
            throw .notRunnable(runState)
        }
    }

    /// `quit`: an orderly end requested by the host (exit status 0).
    public func quit() {
        requestExit(status: 0, reason: nil, guest: false, cause: "host-qmp-quit")
    }

    /// Each vCPU's registers (HMP `info registers`). KVM hands them out only while the vCPU
    /// is outside KVM_RUN, so a running VM is paused for the read (well under a millisecond)
    /// and resumed, without STOP/RESUME events: the guest's run state does not change.
    func registerDump() -> [[String]] {
        let wasRunning = runState == .running
        if wasRunning { pause() }
        defer { if wasRunning { resume() } }
        return vcpus.map { RegisterDump.lines(vcpu: $0.vcpu, memory: memory.guest) }
    }

    /// Kernel thread ids of the vCPU threads (QMP's `thread-id`), 0 until a thread started.
    var vcpuThreadIDs: [Int32] { vcpus.map(\.threadID) }

    var ramBlocks: [RamBlock] { memory.blocks }

    /// The path of the running executable image.
    static var executablePath: String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count)
        return n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : "unknown"
    }

    /// Socket paths the monitors listen on, for `cprctl status`.
    var qmpSocketPaths: [String] { config.qmpSockets }
    var hmpSocketPaths: [String] {
        config.monitors.compactMap { if case .unixServer(let path) = $0 { return path } else { return nil } }
    }
    var serialSocketPath: String? {
        if case .unixServer(let path) = config.serial { return path }
        return nil
    }
}
