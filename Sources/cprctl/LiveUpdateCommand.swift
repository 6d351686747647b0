import CLinux
import Glibc
import Shared

/// `cprctl update`: a live update (cpr-exec) with the VM's current command line, the program
/// resolved again (so an upgraded package is picked up), and a wait for the outcome: exit 0
/// when the new image runs the guest, 1 with the reason on a refusal, failure or rollback.
enum LiveUpdateCommand {
    static func run(_ options: UpdateOptions, runtimeBase: String) -> CprctlResult {
        let target: ResolvedTarget
        do {
            target = try TargetResolver.resolve(options.target, base: runtimeBase)
        } catch {
            return .failure(error.description)
        }
        let path = target.socketPath
        do {
            let before = try snapshot(path)
            guard let running = before.status["arguments"]?.arrayValue?.compactMap(\.stringValue), let program = running.first else {
                return .failure("\(path): the VM does not report its command line (cprvmm too old?)")
            }
            let binary = options.binary ?? program
            let arguments = IncomingOption.removed(from: options.arguments ?? Array(running.dropFirst()))
            // The state travels in a memfd the new image inherits: no file system involved.
            let state = "memfd:"
            let client = try QMPClient(path: path, timeoutSeconds: 10)
            // The VMM's process, watched through a pidfd: if it dies during the update, say so
            // at once instead of waiting for the timeout.
            let watch = client.serverPID.map { pid in (pid: pid, fd: clinux_pidfd_open(pid)) }
            defer { if let watch, watch.fd >= 0 { close(watch.fd) } }
            let command: [JSONValue] = ([binary] + arguments + ["-incoming", state]).map { .string($0) }
            var parameters: JSONObject = ["mode": "cpr-exec", "cpr-exec-command": .array(command)]
            // Only when asked: a VMM that predates bridges does not know the parameter.
            if options.noBridges { parameters["x-cpr-exec-bridges"] = .bool(false) }
            if options.noProbe { parameters["x-cpr-exec-probe"] = .bool(false) }
            _ = try client.execute("migrate-set-parameters", arguments: parameters)
            if let refusal = try migrateRefusal({ _ = try client.execute("migrate", arguments: ["uri": .string(state)]) }) {
                // The VMM's refusals end with "the VM keeps running" already.
                let tail = refusal.hasSuffix("the VM keeps running") ? "" : "; the VM runs on the previous binary"
                return .failure("live update refused: \(refusal)\(tail)")
            }
            client.close()
            return waitForOutcome(path, before: before, timeout: options.timeoutSeconds, process: watch.flatMap { $0.fd >= 0 ? $0 : nil }, json: options.json)
        } catch {
            return .failure("\(error)")
        }
    }

    /// `update --all`: every VM in the runtime directory, one after another, each line of
    /// the outcome prefixed with the VM's name; stops at the first failure unless keepGoing.
    static func runAll(_ options: UpdateOptions, runtimeBase: String) -> CprctlResult {
        let names = RuntimeDirectory.listVMs(in: runtimeBase)
        guard !names.isEmpty else { return .failure("no VM found in \(runtimeBase)") }
        var result = CprctlResult(exitStatus: 0)
        for (index, name) in names.enumerated() {
            var one = options
            one.all = false
            one.target = .name(name)
            let outcome = run(one, runtimeBase: runtimeBase)
            // JSON records name their VM themselves.
            for line in outcome.output.split(separator: "\n") { result.output += options.json ? "\(line)\n" : "\(name): \(line)\n" }
            guard outcome.exitStatus != 0 else { continue }
            result.exitStatus = 1
            let message = outcome.errorOutput.hasPrefix("cprctl: ") ? String(outcome.errorOutput.dropFirst(8)) : outcome.errorOutput
            result.errorOutput += "cprctl: \(name): \(message)"
            let rest = names.count - index - 1
            if !options.keepGoing && rest > 0 {
                result.errorOutput += "cprctl: stopped after \(name) failed: \(rest) VM(s) not updated (\(names.suffix(rest).joined(separator: ", "))); --keep-going updates the others\n"
                break
            }
        }
        return result
    }

    /// The VMM's reason when it refuses `migrate` (QMP error), nil when it took it; other
    /// errors (a lost connection) are thrown.
    private static func migrateRefusal(_ migrate: () throws -> Void) throws -> String? {
        do {
            try migrate()
            return nil
        } catch let error as QMPClientError {
            guard case .command(_, let desc) = error else { throw error }
            return desc
        }
    }

    private struct Snapshot {
        var status: JSONValue
        var generation: Int64
        var updates: Int
        var migrationError: String?
        /// Updates the running image refused or failed; nil from a cprvmm older than the count.
        var failures: Int64?
    }

    private static func snapshot(_ path: String) throws -> Snapshot {
        let client = try QMPClient(path: path, timeoutSeconds: 5)
        defer { client.close() }
        let status = try client.execute("x-query-cprvmm")
        let migration = try client.execute("query-migrate")
        return Snapshot(
            status: status, generation: status["update-generation"]?.intValue ?? 0,
            updates: status["updates"]?.arrayValue?.count ?? 0, migrationError: migration["error-desc"]?.stringValue,
            failures: status["update-failures"]?.intValue)
    }

    /// Polls until the generation grows (success), a rollback is recorded, or the old image
    /// reports the exec failed. The socket stays connectable throughout: it is handed over.
    private static func waitForOutcome(_ path: String, before: Snapshot, timeout: Double, process: (pid: pid_t, fd: Int32)?, json: Bool) -> CprctlResult {
        let deadline = Formatting.now() + timeout
        while Formatting.now() < deadline {
            if let process {
                var exited = pollfd(fd: process.fd, events: Int16(POLLIN), revents: 0)
                if poll(&exited, 1, 20) == 1 {
                    return .failure("live update failed: the VMM (pid \(process.pid)) exited during the update; the guest is lost unless systemd restarts the service from its fd store (see its log)")
                }
            } else {
                usleep(20_000)
            }
            guard let now = try? snapshot(path) else { continue }
            if now.generation > before.generation, let last = now.status["updates"]?.arrayValue?.last {
                guard json else { return CprctlResult(exitStatus: 0, output: summary(last, name: now.status["name"]?.stringValue) + "\n") }
                var record = last.objectValue ?? [:]
                record["name"] = now.status["name"] ?? .null
                return CprctlResult(exitStatus: 0, output: JSON.serialize(.object(record)) + "\n")
            }
            if now.updates > before.updates, let last = now.status["updates"]?.arrayValue?.last {
                return .failure("live update failed: \(last["result"]?.stringValue ?? "unknown reason"); the VM runs on the previous binary")
            }
            // A failure with the same reason as the one before is still a new one: the count says so.
            if let error = now.migrationError, error != before.migrationError || (now.failures ?? 0) > (before.failures ?? 0) {
                return .failure("live update failed: \(error); the VM runs on the previous binary")
            }
        }
        return .failure("no outcome from \(path) within \(Int(timeout)) s (see cprctl status)")
    }

    private static func summary(_ update: JSONValue, name: String?) -> String {
        let pause = (update["pause-us"]?.intValue).map { "\($0 / 1000).\($0 % 1000 / 100) ms" } ?? "?"
        let from = update["from"]?["version"]?.stringValue ?? "?"
        let to = update["to"]?["version"]?.stringValue ?? "?"
        let generation = update["generation"]?.intValue.map(String.init) ?? "?"
        return "\(name ?? "VM") updated (generation \(generation)): \(from) -> \(to), guest paused \(pause)"
    }
}
