import Shared

/// `cprctl list`, `cprctl stop` and `cprctl cont`.
enum ControlCommands {
    /// Every VM in the runtime directory, a line each (or a JSON array): name, state, PID,
    /// version, update generation and the guest pause of its last live update. A VM whose
    /// socket does not answer is listed with the reason, not left out.
    static func list(json: Bool, runtimeBase: String, now: () -> Double) -> CprctlResult {
        var rows: [JSONValue] = []
        for name in RuntimeDirectory.listVMs(in: runtimeBase) {
            var row: JSONObject = ["name": .string(name)]
            do {
                let path = try RuntimeDirectory.qmpSocket(for: name, in: runtimeBase)
                let client = try QMPClient(path: path, timeoutSeconds: 2)
                defer { client.close() }
                let reply = try client.execute("x-query-cprvmm")
                row["status"] = reply["status"] ?? .null
                row["pid"] = reply["pid"] ?? .null
                row["version"] = reply["version"] ?? .null
                row["update-generation"] = reply["update-generation"] ?? .null
                row["last-pause-us"] = reply["updates"]?.arrayValue?.last?["pause-us"] ?? .null
            } catch {
                row["error"] = .string("\(error)")
            }
            rows.append(.object(row))
        }
        if json { return CprctlResult(exitStatus: 0, output: JSON.serializePretty(.array(rows)) + "\n") }
        guard !rows.isEmpty else { return CprctlResult(exitStatus: 0, output: "no VM in \(runtimeBase)\n") }
        var lines = [["NAME", "STATE", "PID", "VERSION", "GENERATION", "LAST PAUSE"]]
        for row in rows {
            let name = row["name"]?.stringValue ?? "?"
            if let error = row["error"]?.stringValue {
                lines.append([name, "unreachable: \(error)", "", "", "", ""])
                continue
            }
            let pause = row["last-pause-us"]?.intValue.map { "\(Double($0 / 10) / 100) ms" } ?? "-"
            lines.append([
                name, row["status"]?.stringValue ?? "?", row["pid"]?.intValue.map { "\($0)" } ?? "?",
                row["version"]?.stringValue ?? "?", row["update-generation"]?.intValue.map { "\($0)" } ?? "?", pause,
            ])
        }
        return CprctlResult(exitStatus: 0, output: table(lines))
    }

    /// Columns padded to the widest cell; the last column is not padded.
    static func table(_ lines: [[String]]) -> String {
        let widths = (0..<(lines.first?.count ?? 0)).map { column in lines.map { $0[column].count }.max() ?? 0 }
        return lines.map { cells in
            cells.enumerated().map { column, cell in
                column == cells.count - 1 ? cell : cell + String(repeating: " ", count: widths[column] - cell.count)
            }.joined(separator: "  ").trimmingTrailingSpaces()
        }.joined(separator: "\n") + "\n"
    }

    /// QMP `stop` or `cont`, then the run state the VM reports.
    static func control(_ options: ControlOptions, runtimeBase: String) -> CprctlResult {
        let target: ResolvedTarget
        do {
            target = try TargetResolver.resolve(options.target, base: runtimeBase)
        } catch {
            return .failure(error.description)
        }
        do {
            let client = try QMPClient(path: target.socketPath, timeoutSeconds: options.timeoutSeconds)
            defer { client.close() }
            _ = try client.execute(options.action.rawValue)
            let status = try client.execute("query-status")["status"]?.stringValue ?? "?"
            let name = target.name ?? target.socketPath
            if options.json {
                return CprctlResult(exitStatus: 0, output: JSON.serialize(.object(["name": .string(name), "status": .string(status)])) + "\n")
            }
            return CprctlResult(exitStatus: 0, output: "\(name): \(status)\n")
        } catch {
            return .failure(error.description)
        }
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var text = self
        while text.hasSuffix(" ") { text.removeLast() }
        return text
    }
}
