import Foundation
import Testing

extension VirtualMachines {
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason))
    struct LiveUpdateTests {
        static let options = ["-m", "64", "-machine", "memfd-alloc=on", "-builtin-guest", "fill=50"]

        /// The second build scripts/test makes (another version), if present.
        static var nextBinary: String? {
            ProcessInfo.processInfo.environment["CPRVMM_NEXT_BIN"].flatMap { FileManager.default.isExecutableFile(atPath: $0) ? $0 : nil }
        }

        struct VM {
            let process: VMProcess
            let qmp: String
            let state: String
            var arguments: [String]
        }

        static func start(_ extra: [String] = [], options: [String] = LiveUpdateTests.options) throws -> VM {
            let qmp = temporarySocketPath("lu")
            let arguments = options + extra + ["-qmp", "unix:\(qmp),server=on,wait=off"]
            let process = try VMProcess(arguments)
            _ = try connectWhenListening(qmp)
            if !extra.contains("-serial") {
                process.waitForOutput("tick 200") { VMProcess.ticks(in: $0).last ?? 0 >= 200 }
            }
            let state = FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-lu-\(UUID().uuidString)").path
            return VM(process: process, qmp: qmp, state: state, arguments: arguments)
        }

        /// x-query-cprvmm over a fresh connection (a live update closes existing ones).
        static func query(_ vm: VM, _ command: String = "x-query-cprvmm") throws -> [String: Any] {
            try query(qmp: vm.qmp, command)
        }

        static func query(qmp: String, _ command: String = "x-query-cprvmm") throws -> [String: Any] {
            let client = try connectWhenListening(qmp)
            let reply = client.execute(#"{"execute": "\#(command)"}"#) ?? ""
            let object = try JSONSerialization.jsonObject(with: Data(reply.utf8)) as? [String: Any]
            return object?["return"] as? [String: Any] ?? [:]
        }

        static func generation(_ vm: VM) -> Int { generation(qmp: vm.qmp) }

        static func generation(qmp: String) -> Int {
            ((try? query(qmp: qmp))?["update-generation"] as? NSNumber)?.intValue ?? -1
        }

        /// Asks for a live update into `command` (program + arguments; -incoming appended)
        /// and returns migrate's reply.
        /// `probe: false` skips the target's --cpr-probe (to reach the exec with a bad target).
        static func requestUpdate(_ vm: VM, command: [String], uri: String? = nil, probe: Bool = true) throws -> String {
            let client = try connectWhenListening(vm.qmp)
            let uri = uri ?? "file:\(vm.state)"
            let full = command + ["-incoming", uri]
            let list = full.map { "\"\($0)\"" }.joined(separator: ", ")
            #expect(client.execute(#"{"execute": "migrate-set-parameters", "arguments": {"mode": "cpr-exec", "cpr-exec-command": [\#(list)], "x-cpr-exec-probe": \#(probe)}}"#) == #"{"return": {}}"#)
            return client.execute(#"{"execute": "migrate", "arguments": {"uri": "\#(uri)"}}"#) ?? ""
        }

        /// Asks for an update into `command` (-incoming URI appended) that is expected to fail, and
        /// returns the failure query-migrate reports (or migrate's own refusal).
        static func updateFailure(_ vm: VM, command: [String], uri: String = "memfd:", timeout: Double = 40) throws -> String {
            let before = (try? query(vm, "query-migrate"))?["error-desc"] as? String
            let reply = try requestUpdate(vm, command: command, uri: uri)
            guard reply == #"{"return": {}}"# else { return reply }
            var migrate: [String: Any] = [:]
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                usleep(20_000)
                migrate = (try? query(vm, "query-migrate")) ?? [:]
                if migrate["status"] as? String == "failed", migrate["error-desc"] as? String != before { break }
            }
            return migrate["error-desc"] as? String ?? "no failure reported: \(migrate)"
        }

        /// A successful update to `binary`: same PID, generation + 1, guest unbroken.
        static func update(_ vm: VM, to binary: String, prefix: [String] = [], uri: String? = nil) throws {
            let before = generation(vm)
            #expect(try requestUpdate(vm, command: prefix + [binary] + Array(vm.arguments), uri: uri) == #"{"return": {}}"#)
            let deadline = Date().addingTimeInterval(60)
            while generation(vm) != before + 1 && Date() < deadline { usleep(20_000) }
            #expect(generation(vm) == before + 1, "update did not complete: \(vm.process.stderr.suffix(600))")
            #expect(vm.process.process.isRunning, "cprvmm died during the update: \(vm.process.stderr.suffix(600))")
        }

        /// The guest ran through everything: one unbroken tick sequence, pattern intact.
        static func expectGuestIntact(_ vm: VM, moreTicks: Int = 300) {
            let target = vm.process.lastTick + moreTicks
            vm.process.waitForOutput(timeout: 60, "tick \(target)") { VMProcess.ticks(in: $0).last ?? 0 >= target }
            let ticks = VMProcess.ticks(in: vm.process.stdout)
            #expect(ticks.first == 1 && VMProcess.firstBreak(in: ticks) == nil, "tick sequence broken: \(String(describing: VMProcess.firstBreak(in: ticks)))")
            #expect(!vm.process.stdout.contains("MEMORY CORRUPTION"))
            #expect(vm.process.stdout.components(separatedBy: "memory filled").count == 2, "the guest started over")
        }

        /// The process's fds, by what they point at (KVM fds are new objects: counted by kind).
        static func fdTargets(_ pid: Int32) -> [String] {
            let dir = "/proc/\(pid)/fd"
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            return entries.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/" + $0) }
                .map { $0.hasPrefix("socket:") ? "socket" : $0.hasPrefix("pipe:") ? "pipe" : $0 }.sorted()
        }

        @Test("QMP: old -> new -> old between two builds; same PID, guest and memory intact, history recorded")
        func qmpBetweenVersions() throws {
            let next = Self.nextBinary ?? Binaries.cprvmm
            if Self.nextBinary == nil { print("note: CPRVMM_NEXT_BIN not set (run scripts/test); updating to the same build") }
            let vm = try Self.start()
            let pid = vm.process.pid
            let fdsBefore = Self.fdTargets(pid)
            try Self.update(vm, to: next)
            let middle = try Self.query(vm)
            #expect((middle["pid"] as? NSNumber)?.int32Value == pid)
            if Self.nextBinary != nil { #expect(middle["version"] as? String == "0.2.0-next") }
            try Self.update(vm, to: Binaries.cprvmm)
            let status = try Self.query(vm)
            #expect((status["pid"] as? NSNumber)?.int32Value == pid)
            #expect(status["version"] as? String == (try cprvmmVersion()))
            let updates = status["updates"] as? [[String: Any]] ?? []
            #expect(updates.count == 2)
            #expect(updates.allSatisfy { $0["result"] as? String == "completed" })
            #expect(((updates.first?["to"] as? [String: Any])?["path"] as? String)?.hasSuffix("cprvmm") == true)
            // The VM's uptime is older than the current image: it survived both updates.
            let vmStarted = (status["vm-started"] as? NSNumber)?.doubleValue ?? 0
            let imageStarted = (status["image-started"] as? NSNumber)?.doubleValue ?? 0
            #expect(vmStarted < imageStarted - 0.1)
            let migrate = try Self.query(vm, "query-migrate")
            #expect(migrate["status"] as? String == "completed")
            #expect(migrate["downtime"] != nil)
            Self.expectGuestIntact(vm)
            // No descriptor leaked into the new images: the same set as before.
            #expect(Self.fdTargets(pid) == fdsBefore, "fds before: \(fdsBefore)\nafter: \(Self.fdTargets(pid))")
            _ = vm.process.terminate()
        }

        @Test("HMP: the exact sequence from QEMU's cpr-exec docs, with migrate -d")
        func hmpSequence() throws {
            let console = FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-console-\(UUID().uuidString)").path
            let state = FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-hmp-\(UUID().uuidString)").path
            defer { unlink(console); unlink(state) }
            let options = Self.options + ["-serial", "file:\(console)", "-monitor", "stdio"]
            let vm = try VMProcess(options)
            vm.waitForLine(containing: "(cprvmm) ")
            usleep(300_000)
            vm.sendInput("migrate_set_parameter mode cpr-exec\n")
            vm.sendInput("migrate_set_parameter cpr-exec-args \(Self.nextBinary ?? Binaries.cprvmm) \(options.joined(separator: " ")) -incoming file:\(state)\n")
            vm.sendInput("migrate -d file:\(state)\n")
            // The new image greets on the same stdio.
            vm.waitForOutput("the new image's monitor") { $0.components(separatedBy: "monitor - type 'help'").count == 3 }
            vm.sendInput("info status\n")
            vm.waitForLine(containing: "VM status: running")
            vm.sendInput("info migrate\n")
            vm.waitForLine(containing: "Migration status: completed")
            usleep(500_000)
            vm.sendInput("quit\n")
            #expect(vm.waitForExit() == 0)
            let text = (try? String(contentsOfFile: console, encoding: .utf8)) ?? ""
            let ticks = VMProcess.ticks(in: text)
            #expect(ticks.count > 500 && VMProcess.firstBreak(in: ticks) == nil, "console: \(ticks.count) ticks, break \(String(describing: VMProcess.firstBreak(in: ticks)))")
            #expect(!text.contains("MEMORY CORRUPTION"))
        }

        @Test("a prefix command (env VAR=1 cprvmm ...) execs the new binary")
        func prefixCommand() throws {
            let vm = try Self.start()
            try Self.update(vm, to: Binaries.cprvmm, prefix: ["/usr/bin/env", "CPRVMM_TEST_PREFIX=1"])
            let environment = (try? String(contentsOfFile: "/proc/\(vm.process.pid)/environ", encoding: .utf8)) ?? ""
            #expect(environment.contains("CPRVMM_TEST_PREFIX=1"), "the prefix command's environment did not reach the new image")
            Self.expectGuestIntact(vm)
            _ = vm.process.terminate()
        }

        @Test("memfd: keeps the VM state in an inherited memfd, no file system involved; it is closed afterwards")
        func memfdURI() throws {
            let vm = try Self.start()
            let fdsBefore = Self.fdTargets(vm.process.pid)
            try Self.update(vm, to: Binaries.cprvmm, uri: "memfd:")
            #expect(access(vm.state, F_OK) != 0, "a state file was written")
            Self.expectGuestIntact(vm)
            #expect(Self.fdTargets(vm.process.pid) == fdsBefore, "fds after: \(Self.fdTargets(vm.process.pid))")
            let plain = try connectWhenListening(vm.qmp)
            _ = plain.execute(#"{"execute": "migrate-set-parameters", "arguments": {"mode": "normal"}}"#)
            _ = plain.execute(#"{"execute": "migrate", "arguments": {"uri": "memfd:"}}"#)
            let info = MigrationTests.waitForMigration(plain)
            #expect(info.contains("memfd: is only for a live update (mode cpr-exec)"), "\(info)")
            _ = vm.process.terminate()
        }

        @Test("50 consecutive updates: the guest verifies its memory throughout, ticks unbroken")
        func fiftyUpdates() throws {
            let vm = try Self.start()
            for _ in 0..<50 { try Self.update(vm, to: Binaries.cprvmm) }
            #expect(Self.generation(vm) == 50)
            Self.expectGuestIntact(vm, moreTicks: 1000)
            let passes = vm.process.stdoutLines.last { $0.contains(" passes ") } ?? ""
            #expect(passes.contains("corruptions 0"), "\(passes)")
            // The tasks that held each old image's address space for its teardown are reaped.
            usleep(1_500_000)
            #expect(Self.zombieChildren(of: vm.process.pid).isEmpty, "zombies: \(Self.zombieChildren(of: vm.process.pid))")
            _ = vm.process.terminate()
        }

        static func zombieChildren(of pid: Int32) -> [Int32] {
            children(of: pid).filter { $0.state == "Z" }.map(\.pid)
        }

        /// Every process whose parent is `pid`, with its state letter from /proc/PID/stat.
        static func children(of pid: Int32) -> [(pid: Int32, state: String)] {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
            return entries.compactMap(Int32.init).compactMap { child in
                guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
                      let close = stat.lastIndex(of: ")") else { return nil }
                let fields = stat[stat.index(after: close)...].split(separator: " ")
                guard fields.count > 2, Int32(fields[1]) == pid else { return nil }
                return (child, String(fields[0]))
            }
        }

        @Test("sockets survive: QMP never refuses a connection, the console client stays connected")
        func socketsSurvive() throws {
            let consoleSocket = temporarySocketPath("console")
            let vm = try Self.start(["-serial", "unix:\(consoleSocket),server=on,wait=off"])
            let console = try UnixClient(path: consoleSocket)
            #expect(console.read(until: "tick ", timeout: 20).contains("tick "))
            // Hammer the QMP socket with connects during the update.
            final class Refusals: @unchecked Sendable { var count = 0; var attempts = 0; var stop = false }
            let refusals = Refusals()
            let thread = Thread {
                while !refusals.stop {
                    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
                    var address = sockaddr_un()
                    address.sun_family = sa_family_t(AF_UNIX)
                    withUnsafeMutableBytes(of: &address.sun_path) { raw in raw.copyBytes(from: vm.qmp.utf8); raw[vm.qmp.utf8.count] = 0 }
                    let ok = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } } == 0
                    close(fd)
                    refusals.attempts += 1
                    if !ok { refusals.count += 1 }
                    usleep(500)
                }
            }
            thread.start()
            try Self.update(vm, to: Binaries.cprvmm)
            refusals.stop = true
            usleep(50_000)
            #expect(refusals.attempts > 10)
            #expect(refusals.count == 0, "\(refusals.count) of \(refusals.attempts) connects were refused during the update")
            // The console connection made before the update still works both ways.
            let before = console.read(until: "\n", timeout: 1)
            console.write("after the update\n")
            let text = console.read(until: "echo: after the update", timeout: 30)
            #expect(text.contains("echo: after the update"), "\(before.suffix(200))")
            _ = vm.process.terminate()
        }

        @Test("refused before anything changes: streaming URI, no command, RAM that cannot survive exec, missing program")
        func refusals() throws {
            let vm = try Self.start()
            let client = try connectWhenListening(vm.qmp)
            _ = client.execute(#"{"execute": "migrate-set-parameters", "arguments": {"mode": "cpr-exec"}}"#)
            #expect(client.execute(#"{"execute": "migrate", "arguments": {"uri": "file:\#(vm.state)"}}"#)?.contains("cpr-exec mode requires setting cpr-exec-command") == true)
            _ = client.execute(#"{"execute": "migrate-set-parameters", "arguments": {"cpr-exec-command": ["\#(Binaries.cprvmm)"]}}"#)
            #expect(client.execute(#"{"execute": "migrate", "arguments": {"uri": "unix:/tmp/x.sock"}}"#)?.contains("mode cpr-exec needs a non-streaming URI (file:PATH or memfd:), not unix:/tmp/x.sock") == true)
            _ = client.execute(#"{"execute": "migrate-set-parameters", "arguments": {"cpr-exec-args": ["/nonexistent/cprvmm"]}}"#)
            #expect(client.execute(#"{"execute": "migrate", "arguments": {"uri": "file:\#(vm.state)"}}"#)?.contains("cpr-exec-command: /nonexistent/cprvmm: no such file or directory; the VM keeps running") == true)
            #expect(Self.generation(vm) == 0)
            Self.expectGuestIntact(vm, moreTicks: 100)
            _ = vm.process.terminate()

            let blocked: [([String], String)] = [
                (["-m", "32"], "Memory region pc.ram is not compatible with CPR: it is anonymous memory that does not survive exec (start the VM with -machine memfd-alloc=on)"),
                (["-object", "memory-backend-ram,id=r0,size=32M", "-machine", "memory-backend=r0"], "Memory region r0 is not compatible with CPR: it is anonymous memory that does not survive exec (use memory-backend-memfd instead of memory-backend-ram)"),
                (["-object", "memory-backend-memfd,id=m0,size=32M,share=off", "-machine", "memory-backend=m0"], "Memory region m0 is not compatible with CPR: it is memfd memory that does not survive exec (set share=on on its memory backend)"),
            ]
            for (options, message) in blocked {
                let other = try Self.start(options: options)
                let c = try connectWhenListening(other.qmp)
                _ = c.execute(#"{"execute": "migrate-set-parameters", "arguments": {"mode": "cpr-exec", "cpr-exec-command": ["\#(Binaries.cprvmm)"]}}"#)
                let reply = c.execute(#"{"execute": "migrate", "arguments": {"uri": "file:\#(other.state)"}}"#) ?? ""
                #expect(reply.contains(message), "\(reply)")
                #expect(c.execute(#"{"execute": "query-status"}"#)?.contains("running") == true)
                _ = other.process.terminate()
            }
        }

        @Test("an exec that fails resumes the VM on the old binary, reports why, leaks nothing")
        func execFails() throws {
            let vm = try Self.start()
            let bogus = FileManager.default.temporaryDirectory.appendingPathComponent("not-a-binary-\(UUID().uuidString)").path
            FileManager.default.createFile(atPath: bogus, contents: Data([0x7F, 0x45, 0x4C, 0x46, 0, 0, 0, 0]), attributes: [.posixPermissions: 0o755])
            defer { unlink(bogus) }
            // With the probe, such a file is refused before the pause (UpdateProbeTests); here
            // the exec itself fails, after the pause.
            let fdsBefore = Self.fdTargets(vm.process.pid)
            #expect(try Self.requestUpdate(vm, command: [bogus], probe: false) == #"{"return": {}}"#)
            var migrate: [String: Any] = [:]
            let deadline = Date().addingTimeInterval(30)
            while migrate["status"] as? String != "failed" && Date() < deadline {
                usleep(20_000)
                migrate = (try? Self.query(vm, "query-migrate")) ?? [:]
            }
            #expect((migrate["error-desc"] as? String)?.contains("execve \(bogus) failed: exec format error") == true, "\(migrate)")
            #expect(try Self.query(vm)["status"] as? String == "running")
            Self.expectGuestIntact(vm)
            #expect(Self.fdTargets(vm.process.pid) == fdsBefore, "a descriptor leaked: \(Self.fdTargets(vm.process.pid))")
            _ = vm.process.terminate()
        }

        @Test("a new image that cannot load the state rolls back to the old one, which resumes the VM")
        func rollback() throws {
            let vm = try Self.start()
            let pid = vm.process.pid
            let command = ["/usr/bin/env", "CPRVMM_INJECT_LOAD_FAILURE=1", Self.nextBinary ?? Binaries.cprvmm] + vm.arguments
            #expect(try Self.requestUpdate(vm, command: command) == #"{"return": {}}"#)
            var status: [String: Any] = [:]
            let deadline = Date().addingTimeInterval(60)
            while (status["updates"] as? [Any])?.isEmpty ?? true, Date() < deadline {
                usleep(20_000)
                status = (try? Self.query(vm)) ?? [:]
            }
            let record = (status["updates"] as? [[String: Any]])?.last ?? [:]
            #expect((record["result"] as? String)?.hasPrefix("rolled back: ") == true, "\(record)")
            #expect((record["result"] as? String)?.contains("load failure injected by CPRVMM_INJECT_LOAD_FAILURE") == true)
            #expect((status["pid"] as? NSNumber)?.int32Value == pid)
            #expect(status["version"] as? String == (try cprvmmVersion()), "not back on the old binary")
            #expect((status["update-generation"] as? NSNumber)?.intValue == 0)
            let migrate = try Self.query(vm, "query-migrate")
            #expect(migrate["status"] as? String == "failed")
            #expect(vm.process.stderr.contains("rolling back to"))
            Self.expectGuestIntact(vm)
            _ = vm.process.terminate()
        }

        @Test("a rollback returns to the old image itself, even after a package upgrade replaced its file")
        func rollbackAfterTheFileWasReplaced() throws {
            // The VM runs from a copy; then a "package upgrade" puts a broken cprvmm (one that
            // cannot load the state) at that path. Rolling back by path would exec the broken
            // one again and lose the VM; the rollback must exec the old image's own file.
            let directory = try GuestBuilder.temporaryDirectory()
            let installed = directory.appendingPathComponent("cprvmm").path
            try FileManager.default.copyItem(atPath: Binaries.cprvmm, toPath: installed)
            let qmp = temporarySocketPath("lr")
            let arguments = Self.options + ["-qmp", "unix:\(qmp),server=on,wait=off"]
            let process = try VMProcess(arguments, binary: installed)
            _ = try connectWhenListening(qmp)
            process.waitForOutput("tick 200") { VMProcess.ticks(in: $0).last ?? 0 >= 200 }
            let vm = VM(process: process, qmp: qmp, state: "", arguments: arguments)

            let upgrade = directory.appendingPathComponent("cprvmm.new").path
            try "#!/bin/sh\nCPRVMM_INJECT_LOAD_FAILURE=1 exec '\(Binaries.cprvmm)' \"$@\"\n".write(toFile: upgrade, atomically: true, encoding: .utf8)
            chmod(upgrade, 0o755)
            #expect(rename(upgrade, installed) == 0)

            #expect(try Self.requestUpdate(vm, command: [installed] + arguments, uri: "memfd:") == #"{"return": {}}"#)
            var status: [String: Any] = [:]
            let deadline = Date().addingTimeInterval(60)
            while (status["updates"] as? [Any])?.isEmpty ?? true, Date() < deadline, process.process.isRunning {
                usleep(20_000)
                status = (try? Self.query(vm)) ?? [:]
            }
            #expect(process.process.isRunning, "the VM died: \(process.stderr.suffix(600))")
            let record = (status["updates"] as? [[String: Any]])?.last ?? [:]
            #expect((record["result"] as? String)?.contains("load failure injected") == true, "\(record)")
            #expect((status["pid"] as? NSNumber)?.int32Value == process.pid)
            #expect((status["binary"] as? String)?.hasSuffix("(deleted)") == true, "not the old image: \(status["binary"] ?? "?")")
            Self.expectGuestIntact(vm)
            _ = process.terminate()
        }

        @Test("-serial stdio on a terminal: quitting after a live update restores the terminal the first image found")
        func terminalRestoredAfterAnUpdate() throws {
            // A pseudo-terminal (posix_openpt & co sit behind _XOPEN_SOURCE: the ioctls directly).
            let master = open("/dev/ptmx", O_RDWR | O_NOCTTY)
            var unlock: Int32 = 0
            var number: UInt32 = 0
            try #require(master >= 0 && ioctl(master, 0x4004_5431 /* TIOCSPTLCK */, &unlock) == 0
                && ioctl(master, 0x8004_5430 /* TIOCGPTN */, &number) == 0)
            defer { close(master) }
            let terminal = open("/dev/pts/\(number)", O_RDWR | O_NOCTTY)
            try #require(terminal >= 0)
            defer { close(terminal) }
            var cooked = termios()
            tcgetattr(terminal, &cooked)
            // Drain the console, or a full pty would stall the guest's output.
            Thread.detachNewThread {
                var buffer = [UInt8](repeating: 0, count: 4096)
                while read(master, &buffer, buffer.count) > 0 {}
            }
            let qmp = temporarySocketPath("tt")
            let arguments = Self.options + ["-qmp", "unix:\(qmp),server=on,wait=off", "-serial", "stdio"]
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Binaries.cprvmm)
            process.arguments = arguments
            let handle = FileHandle(fileDescriptor: terminal, closeOnDealloc: false)
            process.standardInput = handle
            process.standardOutput = handle
            process.standardError = FileHandle.nullDevice
            try process.run()
            _ = try connectWhenListening(qmp)
            var raw = termios()
            tcgetattr(terminal, &raw)
            #expect(raw.c_lflag & tcflag_t(ICANON) == 0, "the console should be raw while the VM runs")

            let client = try connectWhenListening(qmp)
            let command = ([Binaries.cprvmm] + arguments + ["-incoming", "memfd:"]).map { "\"\($0)\"" }.joined(separator: ", ")
            #expect(client.execute(#"{"execute": "migrate-set-parameters", "arguments": {"mode": "cpr-exec", "cpr-exec-command": [\#(command)]}}"#) == #"{"return": {}}"#)
            #expect(client.execute(#"{"execute": "migrate", "arguments": {"uri": "memfd:"}}"#) == #"{"return": {}}"#)
            let deadline = Date().addingTimeInterval(60)
            while Self.generation(qmp: qmp) < 1, Date() < deadline { usleep(20_000) }
            #expect(Self.generation(qmp: qmp) == 1)
            _ = try connectWhenListening(qmp).execute(#"{"execute": "quit"}"#)
            process.waitUntilExit()
            var after = termios()
            tcgetattr(terminal, &after)
            #expect(after.c_lflag == cooked.c_lflag, "the terminal was left raw")
            #expect(after.c_iflag == cooked.c_iflag && after.c_oflag == cooked.c_oflag)
        }

        @Test("a quit that arrives right behind a live update request wins: the VM stops, no exec")
        func quitRightBehindAnUpdate() throws {
            let vm = try Self.start()
            let client = try connectWhenListening(vm.qmp)
            let command = ([Binaries.cprvmm] + vm.arguments + ["-incoming", "memfd:"]).map { "\"\($0)\"" }.joined(separator: ", ")
            #expect(client.execute(#"{"execute": "migrate-set-parameters", "arguments": {"mode": "cpr-exec", "cpr-exec-command": [\#(command)]}}"#) == #"{"return": {}}"#)
            // One write: both commands are taken in the same loop turn, before the update runs.
            client.send(#"{"execute": "migrate", "arguments": {"uri": "memfd:"}}{"execute": "quit"}"#)
            #expect(vm.process.waitForExit(timeout: 20) == 0, "the VM went on (the quit was lost in the exec)")
            #expect(vm.process.stderr.contains("live update dropped: the VM is shutting down"))
            #expect(!vm.process.stderr.contains("live update 1 complete"))
        }

        @Test("cprctl update: success, and a failure with the reason")
        func cprctlUpdate() throws {
            let vm = try Self.start()
            let cprctl = Binaries.directory.appendingPathComponent("cprctl").path
            let ok = try runTool(cprctl, ["update", "--socket", vm.qmp])
            #expect(ok.status == 0, "\(ok.output)")
            #expect(ok.output.contains("updated (generation 1)"), "\(ok.output)")
            let failed = try runTool(cprctl, ["update", "--socket", vm.qmp, "--binary", "/nonexistent/cprvmm"])
            #expect(failed.status == 1)
            #expect(failed.output.contains("/nonexistent/cprvmm: no such file or directory"), "\(failed.output)")
            let status = try runTool(cprctl, ["status", "--socket", vm.qmp])
            #expect(status.output.contains("Updates:      1"), "\(status.output)")
            #expect(status.output.contains("Last update:  #1 completed: guest paused"), "\(status.output)")
            Self.expectGuestIntact(vm)
            _ = vm.process.terminate()
        }
    }
}
