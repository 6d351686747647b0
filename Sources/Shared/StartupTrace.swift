import Glibc

/// Timestamps of the steps of an image's start-up, to see where a live update's pause goes
/// beyond the phases every update records. With `CPRVMM_TRACE_STARTUP=1` the new image logs
/// them after the guest runs again. A mark costs one clock read and an array append.
public enum StartupTrace {
    nonisolated(unsafe) private static var marks: [(name: StaticString, nanoseconds: UInt64)] = []

    public static func mark(_ name: StaticString) {
        marks.append((name, ProcessClock.monotonicNanoseconds()))
    }

    /// "step +µs, ..." from the image's start, or nil unless tracing was asked for.
    public static func report() -> String? {
        guard getenv("CPRVMM_TRACE_STARTUP") != nil else { return nil }
        var previous = ProcessClock.imageStartedMonotonic
        var prefix = ""
        if let text = getenv("CPRVMM_TRACE_EXEC_NS"), let execed = UInt64(String(cString: text)) {
            prefix = "execve to main \((previous - min(previous, execed)) / 1000), "
        }
        let steps = marks.map { mark -> String in
            defer { previous = mark.nanoseconds }
            return "\(mark.name) \((mark.nanoseconds - min(previous, mark.nanoseconds)) / 1000)"
        }
        return "start-up trace (µs per step): " + prefix + steps.joined(separator: ", ")
    }
}
