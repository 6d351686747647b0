/// What the worker asks the Supervisor to exec for a live update or a rollback: the new
/// command line, the fds that must survive (their CLOEXEC is cleared only for the exec),
/// and environment variables to set (or, with a nil value, to remove).
public struct ExecRequest {
    public var arguments: [String]
    public var keepFDs: [Int32]
    public var environment: [(name: String, value: String?)]
    /// Exec this open file instead of the program `arguments[0]` names (fexecve): a rollback
    /// returns to the previous image itself, even after a package upgrade replaced its file.
    public var executableFD: Int32? = nil
}

extension Worker {
    /// Performs the exec; returns only when it failed, with the reason. Installed by the
    /// Supervisor, which owns the process (docs/platform.md: the Supervisor performs execve).
    nonisolated(unsafe) public static var execImage: (ExecRequest) -> String = { _ in "no exec support in this build" }
}
