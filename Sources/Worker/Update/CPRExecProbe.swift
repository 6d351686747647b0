import CLinux
import Glibc
import Shared

/// The live update's preflight of the target program, run while the guest still runs: the
/// `cpr-exec-command` with `--cpr-probe` appended (so through a prefix command such as
/// `env VAR=1 cprvmm ...` too). A cprvmm given `--cpr-probe` as its last argument starts no VM:
/// it parses the rest of its command line and prints one JSON line saying what it reads
/// (state format, section versions, CPR state, vCPU bridge region). The old image execs only
/// into a program that answered that it reads everything this update will hand it; anything
/// else — a script that exits 1, a program that crashes or hangs, a cprvmm that refuses its
/// arguments or reads other versions — refuses the update with its answer, the VM untouched.
/// Without this, such a program would take over the process and the guest would be lost
/// (outside systemd, nothing holds the guest's memory once the process is gone).
enum CPRExecProbe {
    static let flag = "--cpr-probe"
    static let timeoutMilliseconds = 10_000
    /// What a probe may print; more is not an answer.
    static let outputLimit = 64 << 10

    // MARK: The new binary's side

    static func isRequested(_ arguments: [String]) -> Bool { arguments.last == flag }

    /// Prints the answer for `arguments` (the flag last) and returns the exit status: 0 when
    /// the command line parses, 1 when it does not (the answer says why).
    static func answer(arguments: [String]) -> Int32 {
        var problem: JSONValue = .null
        do {
            _ = try CommandLineParser.parse(Array(arguments.dropLast()))
        } catch {
            problem = .string("\(error)")
        }
        let sections = JSONObject(StateSections.readableVersions.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.array($0.value.map { .int(Int64($0)) })) })
        let cpr = JSONObject(StateSections.cprVersions.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.array([.int(Int64($0.value))])) })
        let answer: JSONObject = [
            "cprvmm-probe": .object([
                "version": .string(BuildInfo.version), "build-id": .string(BuildInfo.buildID),
                "state-format": .array(StateFormat.supportedVersions.map { .int(Int64($0)) }),
                "sections": .object(sections), "cpr-state": .object(cpr),
                "vcpu-bridge-region": .array([.int(Int64(StateSections.bridgeRegionVersion))]),
                "command-line-error": problem,
            ])
        ]
        print(JSON.serialize(.object(answer)))
        return problem == .null ? 0 : 1
    }

    // MARK: The old image's side

    /// Why the program's answer does not allow the update, or nil when it does. `waitStatus`
    /// is waitpid's, nil when the probe did not end in time.
    static func refusal(program: String, output: [UInt8], errors: [UInt8], waitStatus: Int32?, bridges: Bool) -> String? {
        let prefix = "cpr-exec-command: \(program)"
        guard let waitStatus else {
            return "\(prefix) did not answer \(flag) within \(timeoutMilliseconds / 1000) s (is it a cprvmm?); the VM keeps running"
        }
        let firstLine = output.split(separator: UInt8(ascii: "\n")).first.map { Array($0) } ?? []
        guard let answer = (try? JSON.parse(firstLine))?["cprvmm-probe"] else {
            let how: String
            if waitStatus & 0x7F != 0 {
                how = "was killed by signal \(waitStatus & 0x7F)"
            } else {
                how = "exited with status \((waitStatus >> 8) & 0xFF)"
            }
            var said = String(decoding: errors.prefix(512), as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
            if said.isEmpty { said = String(decoding: firstLine.prefix(256), as: UTF8.self) }
            let predates = said.contains("-cpr-probe: unknown option")
                ? " (a cprvmm older than the update probe: update with migrate-set-parameters x-cpr-exec-probe=false or cprctl update --no-probe)" : ""
            return "\(prefix) did not answer as a cprvmm: it \(how)\(said.isEmpty ? "" : ", saying: \(said)")\(predates); the VM keeps running"
        }
        let version = answer["version"]?.stringValue ?? "?"
        let who = "\(prefix) (version \(version))"
        if let problem = answer["command-line-error"]?.stringValue {
            return "\(who) refuses its command line: \(problem); the VM keeps running"
        }
        func reads(_ list: JSONValue?, _ version: UInt32) -> Bool {
            list?.arrayValue?.contains { $0.intValue == Int64(version) } == true
        }
        guard reads(answer["state-format"], StateFormat.currentVersion) else {
            return "\(who) does not read state format \(StateFormat.currentVersion), which this cprvmm writes; the VM keeps running"
        }
        var needed = StateSections.versions
        if !bridges { needed[VcpuBridge.sectionName] = nil }
        for (name, sectionVersion) in needed.sorted(by: { $0.key < $1.key }) where !reads(answer["sections"]?[name], sectionVersion) {
            let hint = name == VcpuBridge.sectionName ? " (update with the guest paused across the exec: x-cpr-exec-bridges=false or cprctl update --no-bridges)" : ""
            return "\(who) does not read section '\(name)' version \(sectionVersion)\(hint); the VM keeps running"
        }
        for (name, sectionVersion) in StateSections.cprVersions.sorted(by: { $0.key < $1.key }) where !reads(answer["cpr-state"]?[name], sectionVersion) {
            return "\(who) does not read the CPR state's section '\(name)' version \(sectionVersion); the VM keeps running"
        }
        if bridges, !reads(answer["vcpu-bridge-region"], StateSections.bridgeRegionVersion) {
            return "\(who) does not read the vCPU bridge region version \(StateSections.bridgeRegionVersion) (update with x-cpr-exec-bridges=false or cprctl update --no-bridges); the VM keeps running"
        }
        return nil
    }

    /// Starts the probe of `command` (its program found at `path`) and calls `done` on the loop
    /// thread with the refusal, or nil (never before this returns). Throws only if the probe
    /// cannot be started at all.
    /// Returns the probe's pid (its process group), for a shutdown that comes first.
    @discardableResult
    static func start(command: [String], path: String, bridges: Bool, loop: EventLoop, done: @escaping (String?) -> Void) throws -> pid_t {
        let probe = try Probe(command: command + [flag], path: path)
        let finish: (Int32?) -> Void = { status in
            let (output, errors) = probe.finish()
            done(refusal(program: command[0], output: output, errors: errors, waitStatus: status, bridges: bridges))
        }
        guard let pidfd = probe.pidfd else {
            // No pidfd (an old kernel): wait here, bounded; `done` still comes from the loop.
            let status = probe.waitBlocking(milliseconds: timeoutMilliseconds)
            loop.post { finish(status) }
            return probe.pid
        }
        var timer: Int32 = -1
        timer = try loop.addTimeout(milliseconds: timeoutMilliseconds) {
            loop.remove(pidfd)
            finish(nil)
        }
        do {
            try loop.add(pidfd, events: CLINUX_EPOLLIN) { _ in
                loop.remove(pidfd)
                loop.cancelTimeout(timer)
                finish(probe.reap())
            }
        } catch {
            loop.cancelTimeout(timer)  // `done` never comes: the caller reports the error
            throw error
        }
        return probe.pid
    }

    /// One running probe: the child, its output pipes and its pidfd.
    private final class Probe {
        let pid: pid_t
        let pidfd: Int32?
        private var output: Int32
        private var errors: Int32
        private var reaped = false

        init(command: [String], path: String) throws {
            var out: [Int32] = [-1, -1]
            var err: [Int32] = [-1, -1]
            var rc = clinux_pipe2(&out, O_CLOEXEC)
            if rc == 0 {
                rc = clinux_pipe2(&err, O_CLOEXEC)
                if rc != 0 { close(out[0]); close(out[1]) }
            }
            guard rc == 0 else { throw SystemError("pipe for the update probe", errno: -rc) }
            // Our ends never block: a child the probe left behind may hold the other ends open.
            for fd in [out[0], err[0]] { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
            // The probe is not this service's main process: it must not talk to systemd or
            // take this image's CPR state.
            let hidden = ["NOTIFY_SOCKET=", "LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES=", "WATCHDOG_USEC=", "WATCHDOG_PID=", CPRState.environmentVariable + "="]
            var environment: [String] = []
            var entry = environ
            while let pointer = entry.pointee {
                let text = String(cString: pointer)
                if !hidden.contains(where: text.hasPrefix) { environment.append(text) }
                entry += 1
            }
            let pid = withCStringArray(command) { argv in
                withCStringArray(environment) { envp in clinux_spawn_probe(path, argv, envp, out[1], err[1]) }
            }
            close(out[1])
            close(err[1])
            guard pid > 0 else {
                close(out[0])
                close(err[0])
                throw SystemError("starting \(path) \(CPRExecProbe.flag)", errno: -pid)
            }
            self.pid = pid
            output = out[0]
            errors = err[0]
            let fd = clinux_pidfd_open(pid)
            pidfd = fd >= 0 ? fd : nil
        }

        deinit {
            _ = finish()
            if let pidfd { close(pidfd) }
        }

        /// The probe exited: its whole process group goes (a script may have left children),
        /// then it is reaped. Killed before the reap, so its pid (the group id) is not reused.
        func reap() -> Int32? {
            guard !reaped else { return nil }
            kill(-pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            reaped = true
            return status
        }

        func waitBlocking(milliseconds: Int) -> Int32? {
            let deadline = monotonicNanoseconds() + UInt64(milliseconds) * 1_000_000
            var status: Int32 = 0
            while monotonicNanoseconds() < deadline {
                if waitpid(pid, &status, WNOHANG) == pid {
                    reaped = true
                    kill(-pid, SIGKILL)
                    return status
                }
                usleep(5_000)
            }
            return nil
        }

        /// Ends the probe if it still runs, and returns what it printed (bounded).
        func finish() -> (output: [UInt8], errors: [UInt8]) {
            if !reaped {
                kill(-pid, SIGKILL)
                _ = reap()
            }
            let result = (drain(&output), drain(&errors))
            return result
        }

        private func drain(_ fd: inout Int32) -> [UInt8] {
            guard fd >= 0 else { return [] }
            defer { close(fd); fd = -1 }
            // The probe has ended: what it wrote is in the pipe. Read until EOF or empty, bounded.
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while bytes.count < CPRExecProbe.outputLimit {
                let n = read(fd, &chunk, chunk.count)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { break }
                bytes += chunk[..<n]
            }
            return bytes
        }
    }
}

/// Runs `body` with a NULL-terminated C array of the strings.
private func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { for pointer in pointers { free(pointer) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
