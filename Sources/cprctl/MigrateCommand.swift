import CLinux
import Glibc
import Shared

/// `cprctl migrate`: a live migration (QMP `migrate`, mode normal: pre-copy over tcp:, unix:
/// and exec:) with the parameters asked for, followed by polling `query-migrate` until it
/// ends. Progress goes straight to `output` as it comes (a line redrawn in place on a
/// terminal, plain lines otherwise); the final line is in the result, like other commands'.
///
/// Nothing changes unless the migration starts: the parameters set are put back when the VMM
/// refuses `migrate`. Once it started they stay set on the VM, as after QEMU's
/// migrate-set-parameters. SIGINT (Ctrl-C) or SIGTERM while following sends `migrate_cancel`
/// and waits for the end (the source VM runs on); a second one stops waiting.
enum MigrateCommand {
    /// Between two query-migrate polls.
    static let pollMilliseconds: Int32 = 200

    static func run(_ options: MigrateOptions, runtimeBase: String, output: Int32 = 1) -> CprctlResult {
        let target: ResolvedTarget
        do {
            target = try TargetResolver.resolve(options.target, base: runtimeBase)
        } catch {
            return .failure(error.description)
        }
        let client: QMPClient
        do {
            client = try QMPClient(path: target.socketPath, timeoutSeconds: options.timeoutSeconds)
        } catch {
            return .failure(error.description)
        }
        defer { client.close() }
        let name = target.name ?? (try? client.execute("query-name"))?["name"]?.stringValue ?? target.socketPath
        let subject = "migration of \(name) to \(options.uri)"

        // Blocked from here on, so a Ctrl-C during the set-up is seen rather than killing
        // cprctl between `migrate` and the first poll.
        let signals = SignalWatch([SIGINT, SIGTERM])
        defer { signals.close() }
        do {
            // migrate-set-parameters applies to a migration under way at once: refuse first.
            if let current = MigrationSnapshot(try client.execute("query-migrate")), current.isOutgoing, !current.isFinished {
                return .failure("a migration of \(name) is under way already (\(current.status)): see cprctl status \(name)")
            }
            let settings = try Settings.set(options, on: client)
            if let signal = signals.poll() {
                settings.restore(on: client)
                return CprctlResult(
                    exitStatus: 128 + signal, errorOutput: "cprctl: interrupted before the \(subject) started; nothing changed\n")
            }
            do throws(QMPClientError) {
                _ = try client.execute("migrate", arguments: ["uri": .string(options.uri)])
            } catch {
                settings.restore(on: client)
                guard case .command(_, let reason) = error else { throw error }
                return .failure("\(subject) refused: \(reason)")
            }
        } catch let error as SettingsError {
            return .failure("\(subject) refused: \(error.reason)")
        } catch {
            return .failure("\(error)")
        }
        return follow(client, options: options, name: name, subject: subject, signals: signals, output: output)
    }

    /// Polls until the migration ends; prints progress unless --json.
    private static func follow(
        _ client: QMPClient, options: MigrateOptions, name: String, subject: String, signals: SignalWatch, output: Int32
    ) -> CprctlResult {
        // A pipe that closes must not kill cprctl while the migration runs: it still cancels.
        let previousPipeHandler = signal(SIGPIPE, SIG_IGN)
        defer { signal(SIGPIPE, previousPipeHandler) }
        var line = ProgressLine(fd: output, enabled: !options.json && isatty(output) != 0)
        var plain = PlainProgress()
        var cancelledBy: Int32?
        var info: JSONValue
        var snapshot: MigrationSnapshot
        // Events from before `migrate` returned belong to no migration of ours.
        let firstEvent = client.events.count
        while true {
            do throws(QMPClientError) {
                info = try client.execute("query-migrate")
            } catch {
                line.end()
                // Under systemd a source stops a second after its migration completed; a
                // poll that came later finds it gone, but its MIGRATION event may have come.
                if case .connectionLost = error, completedEvent(client, since: firstEvent) {
                    let json = #"{"status": "completed"}"# + "\n"
                    let human = "\(name): migrated to \(options.uri) (its VMM exited before giving the final figures)\n"
                    return CprctlResult(exitStatus: 0, output: options.json ? json : human)
                }
                return .failure("lost track of the \(subject): \(error) (see cprctl status \(name))")
            }
            guard let current = MigrationSnapshot(info) else {
                line.end()
                return .failure("lost track of the \(subject): query-migrate returned \(JSON.serialize(info))")
            }
            snapshot = current
            if snapshot.isFinished { break }
            if !options.json {
                if line.enabled {
                    line.draw(MigrationProgress.terminalLine(snapshot, width: terminalWidth(output)))
                } else if let text = plain.line(for: snapshot, now: Double(clinux_monotonic_ns()) / 1e9) {
                    writeAll(output, text + "\n")
                }
            }
            guard let signal = signals.wait(milliseconds: pollMilliseconds) else { continue }
            let key = signal == SIGINT ? "Ctrl-C" : "SIGTERM"
            line.end()
            if cancelledBy != nil {
                return CprctlResult(
                    exitStatus: 128 + signal,
                    errorOutput:
                        "cprctl: \(key) again: stopped waiting; the \(subject) may still be cancelling (see cprctl status \(name))\n")
            }
            cancelledBy = signal
            writeAll(2, "cprctl: \(key): cancelling the \(subject) (\(key) again stops waiting)\n")
            do {
                _ = try client.execute("migrate_cancel")
            } catch {
                return .failure("cannot cancel the \(subject): \(error) (see cprctl status \(name))")
            }
        }

        if snapshot.status == "completed" && line.drawn {
            line.draw(MigrationProgress.terminalLine(snapshot, width: terminalWidth(output)))
        }
        line.end()
        var result = CprctlResult(exitStatus: 0)
        if options.json { result.output = JSON.serialize(info) + "\n" }
        switch snapshot.status {
        case "completed":
            if !options.json { result.output = MigrationProgress.completedLine(snapshot, name: name, uri: options.uri) + "\n" }
            if cancelledBy != nil { result.errorOutput = "cprctl: the migration completed before it could be cancelled\n" }
        case "cancelled" where cancelledBy != nil:
            result.exitStatus = 128 + cancelledBy!
            result.errorOutput = "cprctl: \(subject) cancelled; the VM stays on the source\n"
        case "cancelled":
            result.exitStatus = 1
            result.errorOutput = "cprctl: \(subject) cancelled\n"
        default:
            result.exitStatus = cancelledBy.map { 128 + $0 } ?? 1
            result.errorOutput = "cprctl: \(subject) failed: \(snapshot.error ?? "(no reason given)")\n"
        }
        return result
    }

    /// Whether a MIGRATION event said "completed", reading what the server sent before it went.
    private static func completedEvent(_ client: QMPClient, since first: Int) -> Bool {
        client.drainEvents()
        return client.events.dropFirst(first).contains {
            $0["event"]?.stringValue == "MIGRATION" && $0["data"]?["status"]?.stringValue == "completed"
        }
    }

    /// A QMP error setting the parameters or the capability (nothing of it took effect).
    private struct SettingsError: Error {
        let reason: String
    }

    /// The parameters and capability set for this migration, with the values they had.
    private struct Settings {
        var previousParameters: JSONObject = [:]
        var previousAutoConverge: Bool?

        /// Mode normal (a VM left in mode cpr-exec by `cprctl update` would take a file: URI
        /// for a live update), the parameters given, then auto-converge if asked for.
        static func set(_ options: MigrateOptions, on client: QMPClient) throws -> Settings {
            var parameters: JSONObject = ["mode": "normal"]
            if let value = options.downtimeLimitMs { parameters["downtime-limit"] = .int(Int64(value)) }
            if let value = options.maxBandwidth { parameters["max-bandwidth"] = .int(Int64(value)) }
            if let value = options.maxPasses { parameters["x-max-passes"] = .int(Int64(value)) }
            let current = try client.execute("query-migrate-parameters")
            var settings = Settings()
            for key in parameters.keys {
                if let value = current[key] { settings.previousParameters[key] = value }
            }
            do throws(QMPClientError) {
                _ = try client.execute("migrate-set-parameters", arguments: parameters)
            } catch {
                // The VMM checks every parameter before it changes any.
                guard case .command(_, let reason) = error else { throw error }
                throw SettingsError(reason: reason)
            }
            guard options.autoConverge else { return settings }
            let capabilities = try client.execute("query-migrate-capabilities").arrayValue ?? []
            settings.previousAutoConverge = capabilities.first { $0["capability"]?.stringValue == "auto-converge" }?["state"]?.boolValue
            do throws(QMPClientError) {
                _ = try client.execute(
                    "migrate-set-capabilities", arguments: ["capabilities": [["capability": "auto-converge", "state": true]]])
            } catch {
                settings.previousAutoConverge = nil
                settings.restore(on: client)
                guard case .command(_, let reason) = error else { throw error }
                throw SettingsError(reason: reason)
            }
            return settings
        }

        /// Puts back what `set` changed; best effort (the VM refused the migration already).
        func restore(on client: QMPClient) {
            if !previousParameters.isEmpty { _ = try? client.execute("migrate-set-parameters", arguments: previousParameters) }
            if let previousAutoConverge {
                let capability: JSONValue = ["capability": "auto-converge", "state": .bool(previousAutoConverge)]
                _ = try? client.execute("migrate-set-capabilities", arguments: ["capabilities": [capability]])
            }
        }
    }

    /// The terminal's width in columns, 80 when it does not say.
    static func terminalWidth(_ fd: Int32) -> Int {
        var size = winsize()
        guard ioctl(fd, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return 80 }
        return Int(size.ws_col)
    }

    static func writeAll(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let count = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return }
            bytes = bytes.dropFirst(count)
        }
    }
}

/// The progress line on a terminal, redrawn in place: a carriage return, the new text, and
/// spaces over what is left of a longer previous one.
private struct ProgressLine {
    let fd: Int32
    let enabled: Bool
    private var length = 0
    private(set) var drawn = false

    init(fd: Int32, enabled: Bool) {
        self.fd = fd
        self.enabled = enabled
    }

    mutating func draw(_ text: String) {
        guard enabled else { return }
        MigrateCommand.writeAll(fd, "\r" + text + String(repeating: " ", count: max(0, length - text.count)))
        length = text.count
        drawn = true
    }

    /// Ends the line (a newline), so what follows starts on a line of its own.
    mutating func end() {
        guard enabled, length > 0 else { return }
        MigrateCommand.writeAll(fd, "\n")
        length = 0
    }
}

/// Signals taken through a signalfd while they are blocked: the follow loop waits on it
/// between polls, so a signal wakes it at once and cannot end cprctl half-way.
final class SignalWatch {
    private var fd: Int32 = -1
    private var previousMask = sigset_t()
    private var mask = sigset_t()

    init(_ signals: [Int32]) {
        sigemptyset(&mask)
        for signal in signals { sigaddset(&mask, signal) }
        pthread_sigmask(SIG_BLOCK, &mask, &previousMask)
        fd = signalfd(-1, &mask, Int32(SFD_CLOEXEC | SFD_NONBLOCK))
    }

    /// The next signal within `milliseconds` (it also sleeps that long when none comes).
    func wait(milliseconds: Int32) -> Int32? {
        guard fd >= 0 else {
            usleep(useconds_t(milliseconds) * 1000)
            return nil
        }
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard Glibc.poll(&descriptor, 1, milliseconds) > 0 else { return nil }
        return poll()
    }

    /// A signal that has come, without waiting.
    func poll() -> Int32? {
        guard fd >= 0 else { return nil }
        var info = signalfd_siginfo()
        let size = MemoryLayout<signalfd_siginfo>.size
        guard read(fd, &info, size) == size else { return nil }
        return Int32(info.ssi_signo)
    }

    /// Takes any signal still pending (it would act on cprctl once unblocked) and unblocks.
    func close() {
        guard fd >= 0 else { return }
        while poll() != nil {}
        Glibc.close(fd)
        fd = -1
        pthread_sigmask(SIG_SETMASK, &previousMask, nil)
    }
}
