import Glibc
import Shared

/// The fds systemd passes to a started service (its fd store, after a restart): LISTEN_PID,
/// LISTEN_FDS and LISTEN_FDNAMES, as sd_listen_fds(3) documents them. Read here instead of
/// through libsystemd's sd_listen_fds_with_names(), whose names array is malloc'ed by the
/// libc that libsystemd was loaded with: in a static cprvmm (the package's) that is a second
/// libc with its own heap, and freeing the array with ours corrupts the heap.
enum ListenFDs {
    /// The first passed fd (SD_LISTEN_FDS_START).
    static let start: Int32 = 3

    /// The passed fds with their names, or nil when the variables are not meant for this
    /// process (another PID) or are malformed. Pure, for the tests.
    static func parse(pid: String?, count: String?, names: String?, ownPID: Int32) -> [CPRState.InheritedFD]? {
        guard let pid, let count, Int32(pid) == ownPID, let n = Int32(count), n > 0, n < 4096 else { return nil }
        // A name list of the wrong length is ignored, as libsystemd does ("unknown" each).
        var labels = names.map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) } ?? []
        if labels.count != Int(n) { labels = Array(repeating: "unknown", count: Int(n)) }
        return (0..<n).map { CPRState.InheritedFD(name: labels[Int($0)], fd: start + $0) }
    }

    /// Takes the passed fds: marks them close-on-exec and removes LISTEN_* from the
    /// environment, so a later image of this process never claims them again.
    static func take() -> [CPRState.InheritedFD] {
        let value = { (name: String) in getenv(name).map { String(cString: $0) } }
        let passed = parse(pid: value("LISTEN_PID"), count: value("LISTEN_FDS"), names: value("LISTEN_FDNAMES"), ownPID: getpid()) ?? []
        for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] { unsetenv(name) }
        for entry in passed { _ = fcntl(entry.fd, F_SETFD, FD_CLOEXEC) }
        return passed
    }
}
