import Shared

/// One QMP `query-migrate` reply (QEMU's MigrationInfo) as cprctl reads it. Tolerant: a
/// missing or mistyped counter reads as 0, as a reply from a cprvmm that lacks it would mean.
struct MigrationSnapshot: Equatable {
    /// setup, active, cancelling, completed, failed or cancelled.
    var status: String
    var totalTimeMs: Int64?
    var setupTimeMs: Int64?
    var expectedDowntimeMs: Int64?
    var downtimeMs: Int64?
    var error: String?
    /// Whether the reply has QEMU's "ram" counters: only an outgoing migration's has them (an
    /// incoming one reports its status and time, a live update its own record).
    var isOutgoing: Bool
    var transferred: UInt64 = 0
    var remaining: UInt64 = 0
    var total: UInt64 = 0
    /// Pages sent (normal) plus pages found zero (duplicate); nil when the reply lacks them.
    var pagesDone: UInt64?
    var pageSize: UInt64 = 4096
    /// The rate the VMM measured over its last finished pass (0 before one finished).
    var mbps: Double = 0
    var passes: Int64 = 0
    var throttlePercent: Int64?

    static let finishedStatuses: Set<String> = ["completed", "failed", "cancelled"]

    /// nil when the reply has no status (no migration since the VMM started: `{}`).
    init?(_ info: JSONValue) {
        guard let status = info["status"]?.stringValue else { return nil }
        self.status = status
        totalTimeMs = info["total-time"]?.intValue
        setupTimeMs = info["setup-time"]?.intValue
        expectedDowntimeMs = info["expected-downtime"]?.intValue
        downtimeMs = info["downtime"]?.intValue
        error = info["error-desc"]?.stringValue
        throttlePercent = info["cpu-throttle-percentage"]?.intValue
        let ram = info["ram"]
        isOutgoing = ram?.objectValue != nil
        func count(_ key: String) -> UInt64? { ram?[key]?.intValue.map { UInt64(max(0, $0)) } }
        transferred = count("transferred") ?? 0
        remaining = count("remaining") ?? 0
        total = count("total") ?? 0
        if let normal = count("normal"), let duplicate = count("duplicate") { pagesDone = normal + duplicate }
        pageSize = count("page-size").flatMap { $0 > 0 ? $0 : nil } ?? 4096
        mbps = ram?["mbps"]?.doubleValue ?? 0
        passes = ram?["x-passes"]?.intValue ?? 0
    }

    var isFinished: Bool { Self.finishedStatuses.contains(status) }

    /// The pass shown: a stop-and-copy migration (file:) counts no passes, but is one.
    var pass: Int64 { max(passes, 1) }

    /// Whether the first pass over RAM is still under way. `remaining` only drops when a pass
    /// ends (the VMM then looks at the dirty log), so until then it is all of RAM.
    private var inFirstPass: Bool { passes <= 1 && remaining >= total }

    /// The bytes of RAM still to send as far as known. In the first pass: the pages not gone
    /// through yet (`total` less the pages sent or found zero); later: what the last look at
    /// the dirty log found (`remaining`). 0 once completed.
    var bytesLeft: UInt64 {
        if status == "completed" { return 0 }
        guard inFirstPass else { return remaining }
        guard let pagesDone else { return total - min(total, transferred) }
        return total - min(total, pagesDone * pageSize)
    }

    /// How much of the guest's RAM the target holds as it is now, 0 to 100, rounded down:
    /// (total - bytesLeft) / total, so in the first pass the share of pages gone through and
    /// afterwards the share that was clean at the last look at the dirty log.
    var percent: Int {
        if status == "completed" { return 100 }
        guard total > 0 else { return 0 }
        return Int((total - min(total, bytesLeft)) * 100 / total)
    }

    /// Mbit/s: the rate the VMM measured over its last pass, or before a pass finished (the
    /// VMM reports 0 then) the average since the stream started.
    var rateMbps: Double {
        if mbps > 0 { return mbps }
        let sending = (totalTimeMs ?? 0) - (setupTimeMs ?? 0)
        guard sending > 0 else { return 0 }
        return Double(transferred) * 8 / (Double(sending) * 1000)
    }
}

/// What `cprctl migrate` prints while it follows a migration and when it ends, and the line
/// `cprctl status` shows for the last one. Pure functions of query-migrate replies.
enum MigrationProgress {
    /// "412 MiB", "3.5 MiB", "0 MiB".
    static func mib(_ bytes: UInt64) -> String {
        guard bytes > 0 else { return "0 MiB" }
        return figure(Double(bytes) / Double(1 << 20)) + " MiB"
    }

    /// "840 Mbit/s", "2.5 Mbit/s", "0 Mbit/s".
    static func rate(_ mbps: Double) -> String {
        guard mbps.isFinite, mbps >= 0 else { return "? Mbit/s" }
        guard mbps > 0 else { return "0 Mbit/s" }
        return figure(mbps) + " Mbit/s"
    }

    /// A whole number from 10 up, else one decimal ("412", "3.5"; 9.96 is "10").
    static func figure(_ value: Double) -> String {
        (value * 10).rounded() >= 100 ? String(Int64(value.rounded())) : oneDecimal(value)
    }

    /// "5.1 s" under a minute, then systemd's style ("5min 3s").
    static func seconds(milliseconds: Int64) -> String {
        guard milliseconds >= 60_000 else { return "\(oneDecimal(Double(max(0, milliseconds)) / 1000)) s" }
        return Formatting.duration(milliseconds: milliseconds)
    }

    static func oneDecimal(_ value: Double) -> String {
        let tenths = Int64((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    /// The line redrawn in place on a terminal, at most `width - 1` characters:
    /// `[########............]  40%  412 MiB sent  840 Mbit/s  600 MiB left  pass 3  throttle 20%`.
    /// The bar is 10 to 30 characters wide, by the terminal's width; on a terminal too narrow
    /// for every figure, the last ones are left out.
    static func terminalLine(_ snapshot: MigrationSnapshot, width: Int) -> String {
        var figures: [String] = []
        let percent = String(snapshot.percent)
        figures.append(String(repeating: " ", count: max(0, 3 - percent.count)) + percent + "%")
        if snapshot.status == "setup" {
            figures.append("setting up")
        } else {
            if snapshot.status == "cancelling" { figures.append("cancelling") }
            figures.append("\(mib(snapshot.transferred)) sent")
            figures.append(rate(snapshot.rateMbps))
            figures.append("\(mib(snapshot.bytesLeft)) left")
            figures.append("pass \(snapshot.pass)")
            if let throttle = snapshot.throttlePercent, throttle > 0 { figures.append("throttle \(throttle)%") }
        }
        let room = max(1, width - 1)
        // What the figures leave, counting them as at least 56 characters (about their
        // longest without a throttle), so the bar does not jitter as their digits change:
        // 19 characters on an 80-column terminal.
        let barWidth = min(30, max(10, room - 4 - max(56, figures.joined(separator: "  ").count)))
        let filled = barWidth * snapshot.percent / 100
        let bar = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: barWidth - filled) + "]"
        // Too narrow still: the last figures go, whole.
        while figures.count > 1 && bar.count + 2 + figures.joined(separator: "  ").count > room { figures.removeLast() }
        return String((bar + "  " + figures.joined(separator: "  ")).prefix(room))
    }

    /// The line for a pipe: `pass 3: transferred 412 MiB, remaining 600 MiB, 840 Mbit/s`
    /// (and `, throttle 20%` while auto-converge slows the guest).
    static func plainLine(_ snapshot: MigrationSnapshot) -> String {
        var line = "pass \(snapshot.pass): transferred \(mib(snapshot.transferred)), remaining \(mib(snapshot.bytesLeft))"
        line += ", \(rate(snapshot.rateMbps))"
        if let throttle = snapshot.throttlePercent, throttle > 0 { line += ", throttle \(throttle)%" }
        return line
    }

    /// `web1: migrated to tcp:10.0.0.2:4444 in 5.1 s, downtime 4 ms, 537 MiB sent`.
    static func completedLine(_ snapshot: MigrationSnapshot, name: String, uri: String) -> String {
        let time = snapshot.totalTimeMs.map { seconds(milliseconds: $0) } ?? "?"
        let downtime = snapshot.downtimeMs.map { "\($0) ms" } ?? "?"
        return "\(name): migrated to \(uri) in \(time), downtime \(downtime), \(mib(snapshot.transferred)) sent"
    }

    /// The `Migration:` line of `cprctl status`, for an outgoing migration:
    /// `active, pass 3, 40% of 1 GiB, 412 MiB sent, expected downtime 12 ms`,
    /// `completed in 5.1 s, downtime 4 ms, 537 MiB sent`, `failed after 0.1 s: REASON`.
    static func statusLine(_ snapshot: MigrationSnapshot) -> String {
        let time = snapshot.totalTimeMs.map { seconds(milliseconds: $0) } ?? "?"
        switch snapshot.status {
        case "active", "cancelling":
            var line = "\(snapshot.status), pass \(snapshot.pass), \(snapshot.percent)% of \(Formatting.size(bytes: snapshot.total))"
            line += ", \(mib(snapshot.transferred)) sent"
            if let expected = snapshot.expectedDowntimeMs { line += ", expected downtime \(expected) ms" }
            if let throttle = snapshot.throttlePercent, throttle > 0 { line += ", throttle \(throttle)%" }
            return line
        case "completed":
            let downtime = snapshot.downtimeMs.map { "\($0) ms" } ?? "?"
            return "completed in \(time), downtime \(downtime), \(mib(snapshot.transferred)) sent"
        case "failed":
            return "failed after \(time): \(snapshot.error ?? "(no reason given)")"
        case "cancelled":
            return "cancelled after \(time)"
        default:
            return snapshot.status
        }
    }
}

/// When `cprctl migrate` prints a plain line: at each pass it sees begin, but at most one line
/// a second (a guest that dirties little goes through many short passes), and during a long
/// pass one every ten seconds, so a log shows the migration is alive.
struct PlainProgress {
    static let minimumInterval = 1.0
    static let heartbeat = 10.0

    private var lastPass: Int64?
    private var lastTime = -Double.infinity

    /// The line to print for this reply at `now` (seconds, any monotonic clock), or nil.
    mutating func line(for snapshot: MigrationSnapshot, now: Double) -> String? {
        guard snapshot.status == "active" else { return nil }
        let interval = snapshot.pass == lastPass ? Self.heartbeat : Self.minimumInterval
        guard now - lastTime >= interval else { return nil }
        lastPass = snapshot.pass
        lastTime = now
        return MigrationProgress.plainLine(snapshot)
    }
}
