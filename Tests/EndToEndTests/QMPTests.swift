import Foundation
import Testing

extension VirtualMachines {
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason))
    struct QMPTests {
        /// A VM with the built-in guest, its console in `vm.stdout`, and a QMP socket.
        static func startVM(_ extra: [String] = []) throws -> (VMProcess, String) {
            let path = temporarySocketPath("qmp")
            let vm = try VMProcess(["-m", "32", "-name", "qmp-test", "-qmp", "unix:\(path),server=on,wait=off"] + extra)
            waitForSocket(path)
            vm.waitForLine(containing: "tick 5")
            return (vm, path)
        }

        /// The guest must keep ticking after whatever a client did.
        static func expectStillTicking(_ vm: VMProcess, _ context: String) {
            let before = vm.lastTick
            let advanced = vm.waitForOutput(timeout: 20, "ticks after \(context)") { VMProcess.ticks(in: $0).last ?? 0 >= before + 50 }
            #expect(advanced, "guest stopped ticking after \(context)")
        }

        @Test("QEMU's own Python QMP library (qemu.qmp) drives cprvmm")
        func qemuPythonLibrary() throws {
            let python = ProcessInfo.processInfo.environment["CPRVMM_PYTHON"] ?? "python3"
            let probe = try runTool(python, ["-c", "import qemu.qmp"])
            try #require(probe.status == 0, "qemu.qmp is not importable by \(python): run the tests through scripts/test, which installs it")
            let (vm, path) = try Self.startVM()
            let script = Binaries.packageRoot.appendingPathComponent("Tests/qmp/qemu_qmp_check.py").path
            let result = try runTool(python, [script, path])
            #expect(result.status == 0, "qemu_qmp_check.py failed:\n\(result.output)")
            #expect(result.output.contains("stop -> event STOP"))
            #expect(result.output.contains("cont -> event RESUME"))
            #expect(result.output.hasSuffix("OK\n"), "\(result.output)")
            Self.expectStillTicking(vm, "the qemu.qmp session")
            _ = vm.terminate()
        }

        @Test("raw lines through socat: negotiation, id echo, errors, human-monitor-command")
        func socatLines() throws {
            let (vm, path) = try Self.startVM()
            let input = [
                #"{"execute": "query-status"}"#,
                #"{"execute": "qmp_capabilities"}"#,
                #"{"execute": "query-status", "id": "a1"}"#,
                #"{"execute": "query-name"}"#,
                #"{"execute": "human-monitor-command", "arguments": {"command-line": "info status"}, "id": 9}"#,
                #"{"execute": "query-memdev"}"#,
            ].joined(separator: "\n") + "\n"
            let result = try runTool("/usr/bin/socat", ["-t", "2", "-", "UNIX-CONNECT:\(path)"], input: input, until: "\"backing\"")
            let lines = result.output.components(separatedBy: "\r\n")
            #expect(lines.count >= 7, "\(result.output)")
            #expect(lines[safe: 1] == #"{"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}"#)
            #expect(lines[safe: 2] == #"{"return": {}}"#)
            #expect(lines[safe: 3] == #"{"return": {"status": "running", "running": true}, "id": "a1"}"#)
            #expect(lines[safe: 4] == #"{"return": {"name": "qmp-test"}}"#)
            #expect(lines[safe: 5] == #"{"return": "VM status: running\r\n", "id": 9}"#)
            #expect(lines[safe: 6]?.contains(#""id": "pc.ram", "size": 33554432"#) == true, "\(lines[safe: 6] ?? "")")
            _ = vm.terminate()
        }

        @Test("stop and cont pause and resume the guest, with STOP and RESUME events to every client")
        func stopAndCont() throws {
            let (vm, path) = try Self.startVM()
            let first = try QMPLineClient(path: path)
            let second = try QMPLineClient(path: path)
            // As in QEMU, the STOP event is sent as the VM stops: before the command's reply.
            #expect(first.execute(#"{"execute": "stop"}"#) == #"{"return": {}}"#)
            let events = [first.skippedEvents.first ?? "", second.nextLine() ?? ""]
            for event in events {
                #expect(event.hasPrefix(#"{"event": "STOP", "timestamp": {"seconds": "#), "\(event)")
            }
            #expect(first.execute(#"{"execute": "query-status"}"#) == #"{"return": {"status": "paused", "running": false}}"#)
            usleep(300_000)
            let pausedAt = vm.lastTick
            usleep(500_000)
            #expect(vm.lastTick == pausedAt, "the guest ticked while paused")
            #expect(second.execute(#"{"execute": "cont"}"#) == #"{"return": {}}"#)
            #expect(second.skippedEvents.last?.hasPrefix(#"{"event": "RESUME""#) == true)
            #expect(first.nextLine()?.hasPrefix(#"{"event": "RESUME""#) == true)
            Self.expectStillTicking(vm, "cont")
            // The tick sequence survived the pause: no gap, no restart.
            let ticks = VMProcess.ticks(in: vm.stdout)
            #expect(ticks.first == 1 && VMProcess.firstBreak(in: ticks) == nil, "tick sequence broken: \(String(describing: VMProcess.firstBreak(in: ticks)))")
            _ = vm.terminate()
        }

        @Test("quit ends the VM: reply, SHUTDOWN event, exit status 0")
        func quit() throws {
            let (vm, path) = try Self.startVM()
            let client = try QMPLineClient(path: path)
            #expect(client.execute(#"{"execute": "quit"}"#) == #"{"return": {}}"#)
            let event = client.nextLine() ?? ""
            #expect(event.contains(#""event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}"#), "\(event)")
            #expect(vm.waitForExit() == 0)
            #expect(access(path, F_OK) != 0, "the QMP socket file was left behind")
        }

        @Test("query-cpus-fast reports each vCPU's thread")
        func cpus() throws {
            let (vm, path) = try Self.startVM(["-smp", "2"])
            let client = try QMPLineClient(path: path)
            let reply = client.execute(#"{"execute": "query-cpus-fast"}"#) ?? ""
            #expect(reply.contains(#""cpu-index": 0"#) && reply.contains(#""cpu-index": 1"#), "\(reply)")
            // The thread ids are real threads of the cprvmm process.
            let tids = reply.components(separatedBy: #""thread-id": "#).dropFirst().compactMap { Int($0.prefix { $0.isNumber }) }.filter { $0 > 0 }
            #expect(tids.count == 2)
            for tid in tids { #expect(access("/proc/\(vm.pid)/task/\(tid)", F_OK) == 0, "thread \(tid) is not cprvmm's") }
            _ = vm.terminate()
        }

        @Test("bad input gets an error or a closed connection, and the VM keeps running")
        func badInput() throws {
            let (vm, path) = try Self.startVM()
            let client = try QMPLineClient(path: path)
            let cases: [(String, String)] = [
                ("{\"execute\": ", ""),  // completed by the next line below
                (#""query-status"}"#, #"{"return": {"status": "running", "running": true}}"#),
                (#"{"execute": "nope"}"#, #"{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}"#),
                (#"[1, 2]"#, #"{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}"#),
                (#"{"arguments": {}}"#, #"{"error": {"class": "GenericError", "desc": "QMP input lacks member 'execute'"}}"#),
                (#"{"execute": 3}"#, #"{"error": {"class": "GenericError", "desc": "QMP input member 'execute' must be a string"}}"#),
                (#"{"execute": "stop", "bogus": 1}"#, #"{"error": {"class": "GenericError", "desc": "QMP input member 'bogus' is unexpected"}}"#),
                (#"{"execute": "query-status", "arguments": {"x": 1}}"#, #"{"error": {"class": "GenericError", "desc": "Parameter 'x' is unexpected"}}"#),
                (#"{"execute": "human-monitor-command", "arguments": {}}"#, #"{"error": {"class": "GenericError", "desc": "Parameter 'command-line' is missing"}}"#),
                (#"{"execute": "human-monitor-command", "arguments": {"command-line": true}}"#, #"{"error": {"class": "GenericError", "desc": "Invalid parameter type for 'command-line', expected: string"}}"#),
            ]
            for (line, expected) in cases {
                client.send(line)
                guard !expected.isEmpty else { continue }
                #expect(client.nextReply() == expected, "after sending \(line)")
            }
            // Duplicate members are refused, as by QEMU: a filter that allows query-* cannot be
            // bypassed with a second "execute" that the server would take instead.
            client.send(#"{"execute": "query-name", "execute": "stop"}"#)
            #expect(client.nextReply()?.contains("duplicate key 'execute'") == true)
            #expect(client.execute(#"{"execute": "query-status"}"#) == #"{"return": {"status": "running", "running": true}}"#, "the duplicate 'stop' ran")
            client.send(#"{"execute": "query-status", "arguments": {"x": tru}}"#)
            #expect(client.nextReply()?.hasPrefix(#"{"error": {"class": "GenericError", "desc": "JSON parse error"#) == true)
            #expect(client.execute(#"{"execute": "query-status"}"#)?.contains("running") == true, "the connection survives parse errors")
            Self.expectStillTicking(vm, "malformed requests")

            // A huge message: an error, then the connection is closed.
            let huge = try QMPLineClient(path: path)
            huge.send(#"{"execute": "query-status", "arguments": {"pad": ""# + String(repeating: "x", count: 2 << 20))
            #expect(huge.nextReply()?.contains("JSON message too large") == true)
            #expect(huge.nextLine(timeout: 5) == nil, "connection not closed after an oversize message")
            Self.expectStillTicking(vm, "an oversize message")

            // A client that vanishes mid-command, and one that floods without reading.
            let vanishing = try QMPLineClient(path: path)
            vanishing.send(#"{"execute": "query-"#)
            close(vanishing.socket.fd)
            let flood = try UnixClient(path: path)
            let burst = String(repeating: #"{"execute": "query-version"}"# + "\n", count: 200)
            for _ in 0..<200 { flood.write(burst) }
            Self.expectStillTicking(vm, "a disconnect and a flood")
            #expect(client.execute(#"{"execute": "query-status"}"#)?.contains("running") == true, "QMP still answers")
            _ = vm.terminate()
            #expect(vm.stderr.contains("monitor client does not read its replies; disconnecting it"))
        }

        @Test("64 clients connecting at once are all greeted (the listen backlog was 8)")
        func manyConcurrentConnections() throws {
            let (vm, path) = try Self.startVM()
            // Stop the loop from accepting while the clients connect: they wait in the backlog.
            kill(vm.pid, SIGSTOP)
            // Non-blocking connects: a full backlog answers EAGAIN at once instead of waiting.
            var clients: [UnixClient] = []
            var refused: [Error] = []
            for _ in 0..<64 {
                do { clients.append(try UnixClient(path: path, nonBlocking: true)) } catch { refused.append(error) }
            }
            kill(vm.pid, SIGCONT)
            #expect(refused.isEmpty, "\(refused.count) of 64 connections refused (\(refused.first.map { "\($0)" } ?? ""))")
            for client in clients {
                var poller = pollfd(fd: client.fd, events: Int16(POLLIN), revents: 0)
                let line = poll(&poller, 1, 10_000) == 1 ? client.readChunk() ?? "EOF" : "nothing"
                #expect(line.hasPrefix(#"{"QMP": "#), "no greeting: \(line)")
            }
            Self.expectStillTicking(vm, "64 connections")
            _ = vm.terminate()
        }

        @Test("socket files are 0600; a stale one is replaced, a live one refused")
        func socketFiles() throws {
            let path = temporarySocketPath("stale")
            // A stale socket: bound by a process that is gone (here: closed without unlink).
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in raw.copyBytes(from: path.utf8); raw[path.utf8.count] = 0 }
            _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            close(fd)
            #expect(access(path, F_OK) == 0)

            let vm = try VMProcess(["-m", "32", "-serial", "null", "-qmp", "unix:\(path),server=on,wait=off"])
            let client = try connectWhenListening(path)
            #expect(client.execute(#"{"execute": "query-status"}"#)?.contains("running") == true, "stale socket was not replaced")
            var info = stat()
            stat(path, &info)
            #expect(info.st_mode & 0o777 == 0o600)

            let second = try runCprvmm(["-m", "32", "-serial", "null", "-qmp", "unix:\(path),server=on,wait=off"])
            #expect(second.status == 1)
            #expect(second.stderr.contains("-qmp unix:\(path): cannot listen: another process is listening on it"), "\(second.stderr)")
            #expect(client.execute(#"{"execute": "query-status"}"#)?.contains("running") == true, "the first VM was disturbed")
            _ = vm.terminate()
        }
    }
}

/// Runs a tool to completion; `until`: stop reading once the output contains it (for socat).
func runTool(_ tool: String, _ arguments: [String], input: String? = nil, until marker: String? = nil, timeout: Double = 60) throws -> (status: Int32, output: String) {
    let process = Process()
    if tool.hasPrefix("/") {
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
    } else {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [tool] + arguments
    }
    let output = Pipe()
    let stdin = Pipe()
    process.standardOutput = output
    process.standardError = output
    process.standardInput = stdin
    final class Collected: @unchecked Sendable { var data = Data() }
    let lock = NSLock()
    let box = Collected()
    output.fileHandleForReading.readabilityHandler = { handle in
        let chunk = handle.availableData
        lock.lock(); box.data.append(chunk); lock.unlock()
    }
    try process.run()
    if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline {
        if let marker {
            lock.lock(); let text = String(decoding: box.data, as: UTF8.self); lock.unlock()
            if text.contains(marker) { usleep(100_000); break }
        }
        usleep(20_000)
    }
    try? stdin.fileHandleForWriting.close()
    if process.isRunning { process.terminate() }
    process.waitUntilExit()
    output.fileHandleForReading.readabilityHandler = nil
    lock.lock(); box.data.append(output.fileHandleForReading.readDataToEndOfFile()); let text = String(decoding: box.data, as: UTF8.self); lock.unlock()
    return (process.terminationStatus, text)
}
