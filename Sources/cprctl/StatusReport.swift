import Shared

/// Turns the reply of `x-query-cprvmm` (with the unit's facts under "systemd" and the
/// outgoing migration's query-migrate reply under "migration", when there are such) into the
/// human `cprctl status` text, aligned like `systemctl status`. Tolerant: a missing or
/// mistyped field prints as "(unknown)" rather than hiding the rest of the report.
enum StatusReport {
    /// Labels are padded to this width (after the two-space indent).
    static let labelWidth = 14
    static let unknown = "(unknown)"
    static let none = "(none)"

    /// The report, one line per entry, without a trailing newline. `now` is Unix time in
    /// seconds, for "(5min 3s ago)".
    static func format(_ status: JSONValue, now: Double) -> String {
        let name = status["name"]?.stringValue ?? "(unnamed VM)"
        var lines = ["\(name): \(status["status"]?.stringValue ?? unknown)"]

        func add(_ label: String, _ values: [String]) {
            let values = values.isEmpty ? [none] : values
            let prefix = "  " + label + ":"
            let padding = String(repeating: " ", count: max(1, labelWidth - label.count - 1))
            lines.append(prefix + padding + values[0])
            let indent = String(repeating: " ", count: 2 + max(labelWidth, label.count + 2))
            for value in values.dropFirst() { lines.append(indent + value) }
        }

        add("PID", [status["pid"]?.intValue.map { String($0) } ?? unknown])
        if let unit = status["systemd"] { add("systemd", [SystemdUnit.summary(unit)]) }
        add("Binary", [status["binary"]?.stringValue ?? unknown])
        var version = status["version"]?.stringValue ?? unknown
        if let buildID = status["build-id"]?.stringValue { version += " (build id \(buildID))" }
        add("Version", [version])
        add("Image start", [timeAndAge(status["image-started"]?.doubleValue, now: now)])
        add("VM uptime", [status["vm-uptime-ms"]?.intValue.map { Formatting.duration(milliseconds: $0) } ?? unknown])
        add("Updates", [status["update-generation"]?.intValue.map { String($0) } ?? unknown])
        if let last = status["updates"]?.arrayValue?.last { add("Last update", lastUpdateLines(last, now: now)) }
        if let migration = status["migration"].flatMap(MigrationSnapshot.init) {
            add("Migration", [MigrationProgress.statusLine(migration)])
        }
        add("vCPUs", [status["vcpus"]?.intValue.map { String($0) } ?? unknown])
        add("RAM", status["memory"]?.arrayValue.map { $0.map(memoryLine) } ?? [unknown])
        let sockets = status["sockets"]
        add("QMP socket", socketPaths(sockets?["qmp"]))
        add("HMP socket", socketPaths(sockets?["hmp"]))
        add("Console", socketPaths(sockets?["serial"]))
        if let nics = status["nics"]?.arrayValue, !nics.isEmpty { add("NICs", nics.map(nicLine)) }
        return lines.joined(separator: "\n")
    }

    /// "nic0 virtio-net-pci 52:54:00:12:34:56, tap tap0 (netdev n0), link up, rx 12 packets
    /// (0 dropped), tx 12 packets (0 dropped)".
    static func nicLine(_ nic: JSONValue) -> String {
        let backend = nic["backend"]
        var line = "\(nic["id"]?.stringValue ?? unknown) \(nic["model"]?.stringValue ?? unknown) \(nic["mac"]?.stringValue ?? unknown)"
        line += ", \(backend?["type"]?.stringValue ?? "?") \(backend?["ifname"]?.stringValue ?? "?") (netdev \(backend?["id"]?.stringValue ?? "?"))"
        line += nic["link-up"]?.boolValue == false ? ", link down" : ", link up"
        func count(_ key: String) -> String { nic[key]?.intValue.map { String($0) } ?? "?" }
        line += ", rx \(count("rx-packets")) packets (\(count("rx-dropped")) dropped), tx \(count("tx-packets")) packets (\(count("tx-dropped")) dropped)"
        return line
    }

    /// "#3 completed: guest paused 2.1 ms, total 9.8 ms" then "0.1.0 (build 1a2b…) -> 0.1.1 (build 3c4d…), 5min ago".
    static func lastUpdateLines(_ update: JSONValue, now: Double) -> [String] {
        let generation = update["generation"]?.intValue.map { "#\($0) " } ?? ""
        let result = update["result"]?.stringValue ?? unknown
        func milliseconds(_ key: String) -> String {
            guard let us = update[key]?.intValue else { return unknown }
            return "\(us / 1000).\(us % 1000 / 100) ms"
        }
        func image(_ key: String) -> String {
            let version = update[key]?["version"]?.stringValue ?? unknown
            let build = update[key]?["build-id"]?.stringValue.map { " (build \($0.prefix(12)))" } ?? ""
            return version + build
        }
        return [
            "\(generation)\(result): guest paused \(milliseconds("pause-us")), total \(milliseconds("total-us"))",
            "\(image("from")) -> \(image("to")), \(timeAndAge(update["time"]?.doubleValue, now: now))",
        ]
    }

    /// "2026-11-27 13:40:01 UTC (5min 3s ago)".
    static func timeAndAge(_ unixSeconds: Double?, now: Double) -> String {
        guard let unixSeconds, unixSeconds.isFinite else { return unknown }
        let text = Formatting.utcTime(unixSeconds: unixSeconds)
        let age = (now - unixSeconds) * 1000
        guard age >= 0, age < 1e15 else { return text }
        return text + " (\(Formatting.duration(milliseconds: Int64(age.rounded()))) ago)"
    }

    /// "pc.ram 1 GiB memfd, shared" or "ram1 512 MiB file /dev/shm/x, shared".
    static func memoryLine(_ block: JSONValue) -> String {
        var parts = [block["id"]?.stringValue ?? "?"]
        if let size = block["size"]?.intValue, size >= 0 {
            parts.append(Formatting.size(bytes: UInt64(size)))
        } else if let size = block["size"]?.doubleValue, size >= 0, size < 1.8e19 {
            parts.append(Formatting.size(bytes: UInt64(size)))  // a size above Int64.max arrives as a double
        }
        let backing = block["backing"]?.stringValue ?? "unknown backing"
        parts.append(backing)
        if let path = block["path"]?.stringValue { parts.append(path) }
        var line = parts.joined(separator: " ")
        if let shared = block["shared"]?.boolValue { line += shared ? ", shared" : ", private" }
        return line
    }

    /// A socket entry: an array of paths, one path, or null.
    static func socketPaths(_ value: JSONValue?) -> [String] {
        switch value {
        case .string(let path): return [path]
        case .array(let paths): return paths.map { $0.stringValue ?? JSON.serialize($0) }
        case .null: return []
        default: return [unknown]
        }
    }
}
