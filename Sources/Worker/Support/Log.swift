import Glibc

/// Diagnostics go to stderr, one line each, prefixed like QEMU's ("cprvmm: ...").
/// stdout belongs to the guest's serial console when `-serial stdio` is used. Under systemd,
/// when stderr is the journal (JOURNAL_STREAM names it), each line starts with its syslog
/// priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug), which journald takes as the
/// entry's priority: `journalctl -p warning -u cprvmm@NAME` then shows what matters.
enum Log {
    enum Level: Int, Comparable, CaseIterable {
        case error = 3, warning = 4, info = 6, debug = 7

        static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
        var name: String { "\(self)" }
    }

    /// Lines above this level are dropped (`-log-level`); set once, before any thread starts.
    static var level: Level = .info
    /// Whether stderr is the journal's stream for this service (fixed at start: an exec keeps both).
    static let journal = stderrIsJournal()

    static func debug(_ message: @autoclosure () -> String) { if level >= .debug { emit(.debug, message()) } }
    static func info(_ message: String) { emit(.info, message) }
    static func warning(_ message: String) { emit(.warning, "warning: " + message) }
    static func error(_ message: String) { emit(.error, message) }

    private static func emit(_ severity: Level, _ line: String) {
        guard severity <= level else { return }
        var text = (journal ? "<\(severity.rawValue)>" : "") + "cprvmm: " + line + "\n"
        text.withUTF8 { bytes in
            _ = try? writeAll(2, UnsafeRawBufferPointer(bytes))
        }
    }

    /// systemd sets JOURNAL_STREAM=DEVICE:INODE for a service whose stderr is the journal; a
    /// stderr redirected elsewhere (a file, a pipe to another program) keeps plain lines.
    static func stderrIsJournal() -> Bool {
        guard let value = getenv("JOURNAL_STREAM").map({ String(cString: $0) }) else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(2, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }
}

/// Lets through at most `burst` messages per `interval`, then one summary of what it dropped.
/// Guests can hit unknown ports millions of times a second; the log must not drown.
final class RateLimiter: @unchecked Sendable {
    private let lock = Lock()
    private let burst: Int
    private let intervalNanoseconds: UInt64
    private var windowStart: UInt64 = 0
    private var emitted = 0
    private var suppressed = 0

    init(burst: Int = 10, intervalSeconds: Double = 1.0) {
        self.burst = burst
        self.intervalNanoseconds = UInt64(intervalSeconds * 1e9)
    }

    func log(_ message: @autoclosure () -> String) {
        let (shouldEmit, dropped): (Bool, Int) = lock.withLock {
            // Read under the lock: vCPU threads log at once, and a time taken before the lock
            // may be older than the window another thread just opened (an overflow, a crash).
            let now = monotonicNanoseconds()
            var dropped = 0
            if now &- windowStart >= intervalNanoseconds {
                dropped = suppressed
                windowStart = now
                emitted = 0
                suppressed = 0
            }
            if emitted < burst {
                emitted += 1
                return (true, dropped)
            }
            suppressed += 1
            return (false, dropped)
        }
        if dropped > 0 { Log.warning("\(dropped) similar messages suppressed") }
        if shouldEmit { Log.warning(message()) }
    }
}
