/// The VM's run state, with QEMU's RunState names so `query-status` and `info status` read
/// as operators and tools expect. Only the states cprvmm can be in are listed.
public enum RunState: String, Sendable {
    /// Created with -S: vCPUs have never run; `cont` starts them.
    case prelaunch
    case running
    /// Stopped by the monitor (`stop`).
    case paused
    /// The guest or the host ended the VM; the process is exiting.
    case shutdown
    /// A vCPU hit a condition the VM cannot continue from (emulation failure, triple fault...).
    case internalError = "internal-error"
    /// Waiting for, or loading, an incoming migration (-incoming).
    case inmigrate
    /// Stopped by an outgoing migration while it saves the final state.
    case finishMigrate = "finish-migrate"
    /// An outgoing migration completed; the state lives on elsewhere.
    case postmigrate

    /// How HMP's `info status` words it ("VM status: running", "VM status: paused (internal-error)").
    var humanDescription: String {
        switch self {
        case .running: return "running"
        case .paused: return "paused"
        default: return "paused (\(rawValue))"
        }
    }
}

/// Something that happened to the VM, for the monitors' asynchronous events.
public enum MachineEvent: Equatable, Sendable {
    case stop
    case resume
    /// `guest`: the guest caused it; `reason`: QEMU's ShutdownCause name.
    case shutdown(guest: Bool, reason: String)
    /// An outgoing or incoming migration changed status (QMP's MIGRATION event).
    case migration(status: String)
    /// A pre-copy migration started RAM pass `pass` (QMP's MIGRATION_PASS event).
    case migrationPass(pass: Int)
}
