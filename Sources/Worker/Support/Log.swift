import Glibc

/// Diagnostics go to stderr, one line each, prefixed like QEMU's ("cprvmm: ...").
/// stdout belongs to the guest's serial console when `-serial stdio` is used.
enum Log {
    static func info(_ message: String) { emit(message) }
    static func warning(_ message: String) { emit("warning: " + message) }
    static func error(_ message: String) { emit(message) }

    private static func emit(_ line: String) {
        var text = "cprvmm: " + line + "\n"
        text.withUTF8 { bytes in
            _ = try? writeAll(2, UnsafeRawBufferPointer(bytes))
        }
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
