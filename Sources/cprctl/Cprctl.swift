import Glibc
import Shared

/// What a cprctl run produced: its exit status and the text for stdout and stderr.
/// Kept apart from printing so tests can run whole command lines.
struct CprctlResult: Equatable {
    var exitStatus: Int32
    var output = ""
    var errorOutput = ""

    static func failure(_ message: String) -> CprctlResult {
        CprctlResult(exitStatus: 1, errorOutput: "cprctl: \(message)\n")
    }
}

enum Cprctl {
    /// Runs one command line (without the program name). `runtimeBase` is where VM names
    /// are looked up; `now` gives the wall clock for "ago" in status.
    static func run(
        _ arguments: [String],
        runtimeBase: String = RuntimeDirectory.base,
        now: () -> Double = Formatting.now
    ) -> CprctlResult {
        let command: CprctlCommand
        do {
            command = try ArgumentParser.parse(arguments)
        } catch {
            return .failure(error.description)
        }
        switch command {
        case .help:
            return CprctlResult(exitStatus: 0, output: Usage.text + "\n")
        case .version:
            return CprctlResult(exitStatus: 0, output: Usage.versionLine + "\n")
        case .status(let options):
            return status(options, runtimeBase: runtimeBase, now: now)
        case .update(let options):
            return options.all ? LiveUpdateCommand.runAll(options, runtimeBase: runtimeBase) : LiveUpdateCommand.run(options, runtimeBase: runtimeBase)
        case .migrate(let options):
            return MigrateCommand.run(options, runtimeBase: runtimeBase)
        case .list(let json):
            return ControlCommands.list(json: json, runtimeBase: runtimeBase, now: now)
        case .control(let options):
            return ControlCommands.control(options, runtimeBase: runtimeBase)
        case .console(let options):
            return ConsoleCommand.run(options, runtimeBase: runtimeBase)
        case .completion(let shell):
            return CprctlResult(exitStatus: 0, output: CompletionScript.text(for: shell))
        }
    }

    static func status(_ options: StatusOptions, runtimeBase: String, now: () -> Double) -> CprctlResult {
        let target: ResolvedTarget
        do {
            target = try TargetResolver.resolve(options.target, base: runtimeBase)
        } catch {
            return .failure(error.description)
        }
        let reply: JSONValue
        var migration: JSONValue?
        do {
            let client = try QMPClient(path: target.socketPath, timeoutSeconds: options.timeoutSeconds)
            defer { client.close() }
            reply = try client.execute("x-query-cprvmm")
            // The outgoing migration under way or the last one (only its reply has "ram"): an
            // incoming one reports no more than its status, a live update has its own record.
            if let info = try? client.execute("query-migrate"), MigrationSnapshot(info)?.isOutgoing == true { migration = info }
        } catch {
            if case .command(let errorClass, _) = error, errorClass == "CommandNotFound" {
                return .failure("\(error) (\(target.socketPath) is not a cprvmm QMP socket, or its cprvmm is too old)")
            }
            return .failure(error.description)
        }
        guard reply.objectValue != nil else {
            return .failure("unexpected reply from \(target.socketPath): x-query-cprvmm returned \(JSON.serialize(reply))")
        }
        var report = reply
        if let name = reply["name"]?.stringValue, let unit = SystemdUnit.query(vmName: name), case .object(var object) = reply {
            object["systemd"] = unit
            report = .object(object)
        }
        if let migration, case .object(var object) = report {
            object["migration"] = migration
            report = .object(object)
        }
        if options.json {
            return CprctlResult(exitStatus: 0, output: JSON.serializePretty(report) + "\n")
        }
        return CprctlResult(exitStatus: 0, output: StatusReport.format(report, now: now()) + "\n")
    }
}
