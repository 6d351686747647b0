/// QEMU's migration modes (qapi/migration.json MigMode) that this cprvmm implements.
public enum MigrationMode: String, CaseIterable, Sendable {
    /// Guest RAM travels in the stream.
    case normal
    /// For a restart of the VMM on the same host (docs/devel/migration/CPR.rst): RAM in a
    /// shared file (memory-backend-file,share=on) stays in place; other RAM is copied.
    case cprReboot = "cpr-reboot"
    /// Live update: exec a new cprvmm in this process; RAM memfds and shared files are handed
    /// over as fds, never copied (QEMU 10.2's cpr-exec).
    case cprExec = "cpr-exec"

    /// Whether the stream must carry this block's contents.
    func copies(_ block: RamBlock) -> Bool {
        switch self {
        case .normal: return true
        case .cprReboot:
            if case .file = block.backing, block.shared { return false }
            return true
        case .cprExec:
            return !block.survivesExec
        }
    }
}

/// QEMU's MigrationStatus names, the ones cprvmm goes through.
public enum MigrationStatus: String, Sendable {
    case none, setup, active, completed, failed, cancelling, cancelled

    var isFinished: Bool { self == .completed || self == .failed || self == .cancelled || self == .none }
}
