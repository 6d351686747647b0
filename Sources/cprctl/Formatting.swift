import Glibc

/// Pure formatting of durations, sizes and times for people, in systemd's style.
enum Formatting {
    /// "850ms" under a second; otherwise the two largest units, the second only when not zero:
    /// "42s", "5min 3s", "5min", "2h 1min", "3d 4h". Negative durations print as "0ms".
    static func duration(milliseconds: Int64) -> String {
        let milliseconds = max(0, milliseconds)
        if milliseconds < 1000 { return "\(milliseconds)ms" }
        let seconds = milliseconds / 1000
        let units: [(Int64, String)] = [(86400, "d"), (3600, "h"), (60, "min"), (1, "s")]
        let first = units.firstIndex { seconds >= $0.0 }!  // seconds >= 1 matches "s" at least
        let (size, name) = units[first]
        var text = "\(seconds / size)\(name)"
        if first + 1 < units.count {
            let (nextSize, nextName) = units[first + 1]
            let rest = (seconds % size) / nextSize
            if rest > 0 { text += " \(rest)\(nextName)" }
        }
        return text
    }

    /// Binary units, exact where a unit divides the size with fewer than 5 digits
    /// ("1 GiB", "512 MiB", "1536 MiB", "64 KiB", "1000 B"), else one decimal of the
    /// largest unit ("1.0 GiB" for 1 GiB + 4 KiB).
    static func size(bytes: UInt64) -> String {
        let units: [(UInt64, String)] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        for (unit, name) in units where bytes >= unit && bytes % unit == 0 && bytes / unit < 10000 {
            return "\(bytes / unit) \(name)"
        }
        if bytes < 10000 { return "\(bytes) B" }
        let (unit, name) = units.first { bytes >= $0.0 }!  // bytes >= 10000 > 1 KiB
        let tenths = (Double(bytes) / Double(unit) * 10).rounded()
        return "\(Int64(tenths / 10)).\(Int64(tenths.truncatingRemainder(dividingBy: 10))) \(name)"
    }

    /// "2026-11-27 13:40:01 UTC" (fraction of a second dropped).
    static func utcTime(unixSeconds: Double) -> String {
        guard unixSeconds.isFinite, abs(unixSeconds) < 1e12 else { return "(invalid time)" }
        var seconds = time_t(unixSeconds.rounded(.down))
        var parts = tm()
        guard gmtime_r(&seconds, &parts) != nil else { return "(invalid time)" }
        var buffer = [CChar](repeating: 0, count: 64)
        let length = strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M:%S", &parts)
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) + " UTC"
    }

    /// The wall clock as Unix time in seconds.
    static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}
