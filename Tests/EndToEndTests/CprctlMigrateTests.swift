import Foundation
import Testing

extension VirtualMachines {
    /// `cprctl migrate` against real VMs: a source named web1 in a runtime directory of our
    /// own, a target started with -incoming, cprctl's stdout a pipe (plain lines).
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason))
    struct CprctlMigrateTests {
        static func cprctl(_ arguments: [String], runtime: String) throws -> (status: Int32, output: String) {
            try CprctlStatusTests.cprctl(arguments, runtime: runtime)
        }

        /// The source: web1, its QMP socket where `cprctl migrate web1` finds it.
        static func startSource(_ arguments: [String], runtime: String) throws -> (VMProcess, QMPLineClient) {
            let qmp = runtime + "/web1/qmp.sock"
            let vm = try VMProcess(arguments + ["-name", "web1", "-qmp", "unix:\(qmp),server=on,wait=off"])
            return (vm, try connectWhenListening(qmp))
        }

        static func matches(_ line: String, _ pattern: String) -> Bool {
            (try? Regex(pattern)).map { line.wholeMatch(of: $0) != nil } ?? false
        }

        @Test("cprctl migrate NAME unix:PATH follows the migration to the end; the target runs the guest on")
        func migrateOverUnix() throws {
            let runtime = try CprctlStatusTests.runtimeDirectory()
            defer { try? FileManager.default.removeItem(atPath: runtime) }
            let channel = temporarySocketPath("cprctl-stream")
            let arguments = ["-m", "256", "-machine", "memfd-alloc=on", "-builtin-guest", "fill=50"]
            let targetQMP = temporarySocketPath("cprctl-target")
            let target = try VMProcess(arguments + ["-incoming", "unix:\(channel)", "-qmp", "unix:\(targetQMP),server=on,wait=off"])
            defer { _ = target.terminate() }
            let targetClient = try connectWhenListening(targetQMP)
            let (source, client) = try Self.startSource(arguments, runtime: runtime)
            defer { _ = source.terminate() }
            source.waitForOutput("tick 500") { VMProcess.ticks(in: $0).last ?? 0 >= 500 }

            // At 64 MiB/s the 128 MiB of pattern take two seconds: cprctl sees the first pass.
            let result = try Self.cprctl(["migrate", "web1", "unix:\(channel)", "--max-bandwidth", "64M"], runtime: runtime)
            #expect(result.status == 0, "\(result.output)\ntarget: \(target.stderr)")
            #expect(!result.output.contains("\r"), "a pipe gets plain lines: \(result.output)")
            let lines = result.output.split(separator: "\n").map(String.init)
            let final = lines.last ?? ""
            let prefix = "web1: migrated to unix:\(channel) in "
            #expect(final.hasPrefix(prefix) && Self.matches(String(final.dropFirst(prefix.count)), #"[0-9]+\.[0-9] s, downtime [0-9]+ ms, [0-9]+ MiB sent"#), "\(result.output)")
            let progress = lines.dropLast()
            #expect(progress.first?.hasPrefix("pass 1: transferred ") == true, "\(result.output)")
            for line in progress {
                #expect(Self.matches(line, #"pass [0-9]+: transferred [0-9.]+ MiB, remaining [0-9.]+ MiB, [0-9.]+ Mbit/s"#), "\(line)")
            }

            #expect(client.execute(#"{"execute": "query-status"}"#) == #"{"return": {"status": "postmigrate", "running": false}}"#)
            #expect(targetClient.execute(#"{"execute": "query-status"}"#) == #"{"return": {"status": "running", "running": true}}"#)
            MigrationTests.expectGuestContinued(from: source, on: target)
            // The parameter stays set on the source, as after QEMU's migrate-set-parameters.
            #expect(client.execute(#"{"execute": "query-migrate-parameters"}"#)?.contains(#""max-bandwidth": 67108864"#) == true)

            let status = try Self.cprctl(["status", "web1"], runtime: runtime)
            #expect(status.output.hasPrefix("web1: postmigrate\n"), "\(status.output)")
            #expect(status.output.contains("\n  Migration:    completed in "), "\(status.output)")
            let json = try Self.cprctl(["status", "web1", "--json"], runtime: runtime)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
            let migration = try #require(object["migration"] as? [String: Any], "\(json.output)")
            #expect(migration["status"] as? String == "completed")
        }

        @Test("cprctl migrate: an unreachable URI fails with the reason, a bad one is refused and changes nothing, Ctrl-C cancels; the source runs on")
        func failuresLeaveTheSourceRunning() throws {
            let runtime = try CprctlStatusTests.runtimeDirectory()
            defer { try? FileManager.default.removeItem(atPath: runtime) }
            let (source, client) = try Self.startSource(["-m", "64", "-machine", "memfd-alloc=on", "-builtin-guest", "fill=50"], runtime: runtime)
            defer { _ = source.terminate() }
            source.waitForLine(containing: "tick 100")
            let running = #"{"return": {"status": "running", "running": true}}"#

            let failed = try Self.cprctl(["migrate", "web1", "unix:/nonexistent"], runtime: runtime)
            #expect(failed.status == 1)
            #expect(failed.output.hasPrefix("cprctl: migration of web1 to unix:/nonexistent failed: "), "\(failed.output)")
            #expect(failed.output.contains("no such file or directory") && failed.output.split(separator: "\n").count == 1, "\(failed.output)")
            #expect(client.execute(#"{"execute": "query-status"}"#) == running)
            QMPTests.expectStillTicking(source, "a failed cprctl migrate")

            // Refused by the VMM: the parameters and the capability are as they were.
            let parameters = client.execute(#"{"execute": "query-migrate-parameters"}"#)
            let capabilities = client.execute(#"{"execute": "query-migrate-capabilities"}"#)
            let refused = try Self.cprctl(["migrate", "web1", "ftp://x", "--downtime-limit", "7", "--auto-converge"], runtime: runtime)
            #expect(refused.status == 1)
            #expect(refused.output.hasPrefix("cprctl: migration of web1 to ftp://x refused: invalid migration URI 'ftp://x'"), "\(refused.output)")
            #expect(client.execute(#"{"execute": "query-migrate-parameters"}"#) == parameters)
            #expect(client.execute(#"{"execute": "query-migrate-capabilities"}"#) == capabilities)
            // cprctl status still shows the failed migration: the refused one did not start.
            let status = try Self.cprctl(["status", "web1"], runtime: runtime)
            #expect(status.output.contains("\n  Migration:    failed after "), "\(status.output)")

            // Ctrl-C: a migration stuck in its first pass (the command reads nothing for a
            // while) is cancelled, cprctl waits for that and exits 130; the guest runs on.
            let process = Process()
            process.executableURL = URL(fileURLWithPath: CprctlStatusTests.cprctl)
            process.arguments = ["migrate", "web1", "exec:sleep 30; cat >/dev/null"]
            process.environment = ["CPRVMM_RUNTIME_DIR": runtime]
            let output = Pipe()
            let errors = Pipe()
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            MigrationTests.waitForActiveMigration(client)
            usleep(300_000)  // cprctl has polled at least once
            process.interrupt()
            let exited = Date().addingTimeInterval(20)
            while process.isRunning && Date() < exited { usleep(50_000) }
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
            let stdout = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(process.terminationReason == .exit && process.terminationStatus == 130, "\(stdout)\(stderr)")
            #expect(stderr.hasSuffix("cprctl: migration of web1 to exec:sleep 30; cat >/dev/null cancelled; the VM stays on the source\n"), "\(stderr)")
            #expect(client.execute(#"{"execute": "query-migrate"}"#)?.contains(#""status": "cancelled""#) == true)
            #expect(client.execute(#"{"execute": "query-status"}"#) == running)
            QMPTests.expectStillTicking(source, "a cancelled cprctl migrate")
        }
    }
}
