import Glibc

/// When this process image started (wall clock), captured by the first access, which the
/// Supervisor makes first thing in main. A live update starts a new image in the same
/// process, so this is per image; the VM's own start time travels in the handoff.
public enum ProcessClock {
    public static let imageStarted: Double = now()
    /// The same moment on CLOCK_MONOTONIC, which is system-wide and so comparable with
    /// timestamps the previous image took (live-update phases).
    public static let imageStartedMonotonic: UInt64 = monotonicNanoseconds()

    public static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Wall-clock time as Unix seconds with microsecond precision (QMP event timestamps).
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec / 1000) / 1e6
    }
}
