import Foundation
import Testing

/// What cprvmm tells systemd, received on a NOTIFY_SOCKET the test binds (as systemd would),
/// and the fd-store recovery driven the way systemd drives it (LISTEN_FDS). The same paths run
/// under a real systemd manager in Tests/Systemd/run-tests.
extension VirtualMachines {
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason))
    struct ServiceNotifyTests {
        static func arguments(_ qmp: String, serial: String = "null") -> [String] {
            ["-m", "64", "-machine", "memfd-alloc=on", "-builtin-guest", "fill=50",
             "-qmp", "unix:\(qmp),server=on,wait=off", "-serial", serial]
        }

        static func qmp(_ path: String, _ command: String) throws -> String {
            let client = try connectWhenListening(path)
            return client.execute(#"{"execute": "\#(command)"}"#) ?? ""
        }

        static func monotonicMicroseconds() -> UInt64 {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        }

        @Test func everyLifecycleMessage() throws {
            let notify = try NotifySocket()
            defer { notify.close() }
            let qmp = temporarySocketPath("sn")
            let vm = try VMProcess(Self.arguments(qmp), environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"])

            // READY=1 once the guest runs, with the status line and a watchdog ping.
            let ready = try #require(notify.waitFor { $0.fields["READY"] == "1" })
            #expect(ready.fields["STATUS"] == "running, update generation 0")
            #expect(ready.fields["WATCHDOG"] == "1")
            // The guest's RAM goes to the fd store: the memfd itself.
            let ram = try #require(notify.waitFor { $0.fields["FDSTORE"] == "1" && $0.fields["FDNAME"] == "ram-pc.ram" })
            #expect(ram.fds.count == 1)
            #expect(NotifySocket.describe(ram.fds[0]).hasPrefix("/memfd:pc.ram"))

            // WATCHDOG=1 every 200 ms (half of WATCHDOG_USEC), from the event loop.
            let pings = notify.messages.filter { $0.text == "WATCHDOG=1" }.count
            usleep(1_500_000)
            #expect(notify.messages.filter { $0.text == "WATCHDOG=1" }.count >= pings + 3)

            // stop / cont change STATUS=.
            #expect(try Self.qmp(qmp, "stop") == #"{"return": {}}"#)
            #expect(notify.waitFor { $0.fields["STATUS"]?.hasPrefix("paused, update generation 0") == true } != nil)
            #expect(try Self.qmp(qmp, "cont") == #"{"return": {}}"#)

            // SIGHUP: RELOADING=1 with MONOTONIC_USEC, the state stored until the new image
            // resumes, then READY=1 from the new image and the state dropped from the store.
            let beforeSignal = Self.monotonicMicroseconds()
            kill(vm.pid, SIGHUP)
            let reloading = try #require(notify.waitFor { $0.fields["RELOADING"] == "1" })
            let stamp = try #require(reloading.fields["MONOTONIC_USEC"].flatMap { UInt64($0) })
            #expect(stamp >= beforeSignal && stamp <= Self.monotonicMicroseconds())
            let state = try #require(notify.waitFor { $0.fields["FDSTORE"] == "1" && $0.fields["FDNAME"] == "vm-state" })
            #expect(state.fds.count == 1)
            #expect(notify.waitFor { $0.fields["FDSTORE"] == "1" && $0.fields["FDNAME"] == "cpr-state" }?.fds.count == 1)
            let updated = try #require(notify.waitFor { $0.fields["READY"] == "1" && $0.fields["STATUS"]?.contains("update generation 1") == true })
            #expect(updated.fields["STATUS"]?.contains("last update paused the guest") == true)
            #expect(notify.waitFor { $0.text == "FDSTOREREMOVE=1\nFDNAME=vm-state" } != nil)
            #expect(notify.waitFor { $0.text == "FDSTOREREMOVE=1\nFDNAME=cpr-state" } != nil)
            // The saved state was emptied before the guest ran again: never resumable twice.
            var info = stat()
            #expect(fstat(state.fds[0], &info) == 0 && info.st_size == 0)
            let order = notify.messages.map(\.text)
            let readyIndex = try #require(order.firstIndex { $0.contains("update generation 1") })
            #expect(order.firstIndex(of: "FDSTOREREMOVE=1\nFDNAME=vm-state").map { $0 > readyIndex } == true)

            // SIGTERM: STOPPING=1, exit 0, and the fd store emptied so the next start is fresh.
            #expect(vm.terminate() == 0)
            #expect(notify.waitFor { $0.fields["STOPPING"] == "1" }?.fields["STATUS"] == "shutting down: received SIGTERM, shutting down")
            #expect(notify.waitFor { $0.text == "FDSTOREREMOVE=1\nFDNAME=ram-pc.ram" } != nil)
            for message in notify.messages { for fd in message.fds { close(fd) } }
        }

        /// A SIGHUP while an update runs is neither lost nor merged: exactly one more follows.
        @Test func aSIGHUPDuringAnUpdateLeadsToExactlyOneMore() throws {
            let notify = try NotifySocket()
            defer { notify.close() }
            let qmp = temporarySocketPath("sh")
            let vm = try VMProcess(Self.arguments(qmp), environment: ["NOTIFY_SOCKET": notify.path])
            #expect(notify.waitFor { $0.fields["READY"] == "1" } != nil)
            kill(vm.pid, SIGHUP)
            #expect(notify.waitFor { $0.fields["RELOADING"] == "1" } != nil)
            kill(vm.pid, SIGHUP)  // the first update is under way
            #expect(notify.waitFor { $0.fields["STATUS"]?.contains("update generation 2") == true } != nil)
            usleep(1_500_000)
            #expect(!notify.messages.contains { $0.fields["STATUS"]?.contains("update generation 3") == true })
            #expect(notify.messages.filter { $0.fields["RELOADING"] == "1" }.count == 2)
            #expect(vm.terminate() == 0)
        }

        @Test func extendsTheStartTimeoutWhileAnIncomingMigrationLoads() throws {
            let qmp = temporarySocketPath("sx")
            let stateFile = FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-sx-\(UUID().uuidString)").path
            defer { unlink(stateFile) }
            let source = try VMProcess(Self.arguments(qmp))
            _ = try connectWhenListening(qmp)
            let client = try connectWhenListening(qmp)
            #expect(client.execute(#"{"execute": "migrate", "arguments": {"uri": "file:\#(stateFile)"}}"#) == #"{"return": {}}"#)
            #expect(Self.waitUntil { (try? Self.qmp(qmp, "query-status"))?.contains("postmigrate") == true })
            _ = source.terminate()

            let notify = try NotifySocket()
            defer { notify.close() }
            // A slow source: the stream arrives after 2.5 s.
            let target = try VMProcess(
                Self.arguments(temporarySocketPath("sy")) + ["-incoming", "exec:sleep 2.5; cat \(stateFile)"],
                environment: ["NOTIFY_SOCKET": notify.path])
            let extension_ = try #require(notify.waitFor { $0.fields["EXTEND_TIMEOUT_USEC"] != nil })
            #expect(extension_.fields["EXTEND_TIMEOUT_USEC"] == "10000000")
            #expect(!notify.messages.contains { $0.fields["READY"] == "1" }, "READY=1 before the state was loaded")
            #expect(notify.waitFor { $0.fields["READY"] == "1" }?.fields["STATUS"] == "running, update generation 0")
            #expect(target.terminate() == 0)
        }

        /// What systemd does after the process died mid-update: start the service again with the
        /// fd store's contents as LISTEN_FDS. The guest must resume where it was, memory intact.
        @Test func resumesFromTheFDStoreAfterACrashMidUpdate() throws {
            let directory = try GuestBuilder.temporaryDirectory()
            let serial = directory.appendingPathComponent("serial").path
            let crash = directory.appendingPathComponent("crash").path
            // A new binary that answers the update probe (through a working cprvmm) and then
            // crashes as it starts, after the exec.
            try """
                #!/bin/sh
                for last; do :; done
                [ "$last" = --cpr-probe ] && exec \(Binaries.cprvmm) "$@"
                kill -KILL $$

                """.write(toFile: crash, atomically: true, encoding: .utf8)
            chmod(crash, 0o755)
            let notify = try NotifySocket()
            defer { notify.close() }
            let qmp = temporarySocketPath("sc")
            let arguments = Self.arguments(qmp, serial: "file:\(serial)")
            let vm = try VMProcess(arguments, environment: ["NOTIFY_SOCKET": notify.path])
            #expect(notify.waitFor { $0.fields["FDNAME"] == "ram-pc.ram" } != nil)
            #expect(Self.waitUntil { Self.lastTick(serial) >= 300 })

            let client = try connectWhenListening(qmp)
            let command = ([crash] + arguments + ["-incoming", "memfd:"]).map { "\"\($0)\"" }.joined(separator: ", ")
            #expect(client.execute(#"{"execute": "migrate-set-parameters", "arguments": {"mode": "cpr-exec", "cpr-exec-command": [\#(command)]}}"#) == #"{"return": {}}"#)
            #expect(client.execute(#"{"execute": "migrate", "arguments": {"uri": "memfd:"}}"#) == #"{"return": {}}"#)
            _ = vm.waitForExit()
            #expect(vm.process.terminationReason == .uncaughtSignal)
            let tickAtCrash = Self.lastTick(serial)

            // The fd store as systemd holds it now: the last fd stored under each name.
            var store: [String: Int32] = [:]
            for message in notify.messages {
                let fields = message.fields
                guard let name = fields["FDNAME"] else { continue }
                if fields["FDSTORE"] == "1", let fd = message.fds.first { store[name] = fd }
                if fields["FDSTOREREMOVE"] == "1" { store[name] = nil }
            }
            // vcpu-bridge: the guest ran on in vCPU bridges, which dumped the vCPUs there as
            // the process died.
            let names = ["ram-pc.ram", "serial-file", "vm-state", "cpr-state", "vcpu-bridge"]
            #expect(Set(store.keys) == Set(names))

            let restarted = try ListenFDsProcess(
                Binaries.cprvmm, arguments: arguments, fds: names.compactMap { store[$0] }, names: names,
                environment: ["NOTIFY_SOCKET": notify.path], output: directory.appendingPathComponent("restarted.log").path)
            defer { restarted.terminate() }
            #expect(notify.waitFor { $0.fields["READY"] == "1" && $0.fields["STATUS"]?.contains("fd store") == true } != nil)
            #expect(Self.waitUntil { Self.lastTick(serial) >= tickAtCrash + 300 }, "the guest did not resume")
            let text = (try? String(contentsOfFile: serial, encoding: .utf8)) ?? ""
            #expect(!text.contains("MEMORY CORRUPTION"))
            #expect(text.components(separatedBy: "memory filled").count == 2, "the guest started over instead of resuming")
            // The console file came back from the store too: one log, the ticks unbroken.
            let ticks = VMProcess.ticks(in: text)
            #expect(ticks.first == 1 && VMProcess.firstBreak(in: ticks) == nil, "\(String(describing: VMProcess.firstBreak(in: ticks)))")
            let status = try Self.qmp(qmp, "x-query-cprvmm")
            #expect(status.contains(#""update-generation": 0"#))
            #expect(status.contains("resumed from the fd store"))
            for fd in store.values { close(fd) }
        }

        static func waitUntil(timeout: Double = 30, _ condition: () -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while !condition() {
                if Date() > deadline { return false }
                usleep(50_000)
            }
            return true
        }

        static func lastTick(_ path: String) -> Int {
            VMProcess.ticks(in: (try? String(contentsOfFile: path, encoding: .utf8)) ?? "").last ?? 0
        }
    }
}

/// A cprvmm started the way systemd starts a service with a non-empty fd store: the fds at
/// 3, 4, ... with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID (set by a shell that then execs,
/// so the pid is right).
final class ListenFDsProcess {
    let pid: pid_t

    init(_ binary: String, arguments: [String], fds: [Int32], names: [String], environment: [String: String], output: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Move the fds out of the way first, then into place: a source fd may be a target.
        for (index, fd) in fds.enumerated() { posix_spawn_file_actions_adddup2(&actions, fd, Int32(100 + index)) }
        for index in fds.indices { posix_spawn_file_actions_adddup2(&actions, Int32(100 + index), Int32(3 + index)) }
        for index in fds.indices { posix_spawn_file_actions_addclose(&actions, Int32(100 + index)) }
        let script = "LISTEN_PID=$$ exec \"$0\" \"$@\""
        let argv = ["/bin/sh", "-c", script, binary] + arguments
        var env = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        env["LISTEN_FDS"] = String(fds.count)
        env["LISTEN_FDNAMES"] = names.joined(separator: ":")
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        let argvp = argv.map { strdup($0) } + [nil]
        defer { for pointer in envp + argvp { free(pointer) } }
        var child: pid_t = 0
        let result = posix_spawn(&child, "/bin/sh", &actions, nil, argvp, envp)
        guard result == 0 else { throw POSIXError(POSIXErrorCode(rawValue: result) ?? .EINVAL) }
        pid = child
    }

    func terminate() {
        kill(pid, SIGTERM)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }
}
