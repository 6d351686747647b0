import Foundation
import Testing

extension VirtualMachines {
    /// The target of a live update is asked first (`--cpr-probe`), while the guest runs: a
    /// program that is not a cprvmm reading this state never takes over the process.
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason))
    struct UpdateProbeTests {
        typealias LU = LiveUpdateTests

        /// An executable shell script in the temporary directory.
        static func script(_ body: String) throws -> String {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-target-\(UUID().uuidString)").path
            try ("#!/bin/sh\n" + body + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o755)
            return path
        }

        @Test("programs that are not a working cprvmm are refused before the pause; the guest never stops")
        func badTargetsAreRefused() throws {
            let vm = try LU.start()
            let fails = try Self.script("echo 'not today' >&2; exit 1")
            let crashes = try Self.script("kill -SEGV $$")
            let hangs = try Self.script("sleep 100")
            let silent = try Self.script("exit 0")
            let old = try Self.script("echo 'cprvmm: -cpr-probe: unknown option (see cprvmm --help)' >&2; exit 1")
            defer { for path in [fails, crashes, hangs, silent, old] { unlink(path) } }
            let bogus = FileManager.default.temporaryDirectory.appendingPathComponent("not-a-binary-\(UUID().uuidString)").path
            FileManager.default.createFile(atPath: bogus, contents: Data([0x7F, 0x45, 0x4C, 0x46, 0, 0, 0, 0]), attributes: [.posixPermissions: 0o755])
            defer { unlink(bogus) }
            let cases: [(command: [String], says: String)] = [
                ([fails] + vm.arguments, "did not answer as a cprvmm: it exited with status 1, saying: not today; the VM keeps running"),
                ([crashes] + vm.arguments, "did not answer as a cprvmm: it was killed by signal 11"),
                ([hangs] + vm.arguments, "did not answer --cpr-probe within 10 s"),
                ([silent] + vm.arguments, "did not answer as a cprvmm: it exited with status 0"),
                ([old] + vm.arguments, "a cprvmm older than the update probe: update with migrate-set-parameters x-cpr-exec-probe=false or cprctl update --no-probe"),
                ([Binaries.cprvmm] + vm.arguments + ["-bogus"], "refuses its command line: -bogus: unknown option (see cprvmm --help)"),
                ([bogus] + vm.arguments, "exec format error"),
            ]
            for (command, says) in cases {
                let reason = try LU.updateFailure(vm, command: command)
                #expect(reason.contains(says), "\(command[0]): \(reason)")
                #expect(vm.process.process.isRunning, "\(vm.process.stderr.suffix(600))")
            }
            #expect(LU.generation(vm) == 0)
            #expect(try LU.query(vm)["status"] as? String == "running")
            LU.expectGuestIntact(vm)
            // The probes and whatever they started are gone.
            #expect(LU.children(of: vm.process.pid).isEmpty, "left behind: \(LU.children(of: vm.process.pid))")
            // A working target is still taken after all that.
            try LU.update(vm, to: Binaries.cprvmm)
            _ = vm.process.terminate()
        }

        @Test("cprctl update says at once when the VMM dies during the update (a binary that passes the probe, then crashes)")
        func cprctlNoticesTheVMMDying() throws {
            let vm = try LU.start()
            let crash = try Self.script("""
                for last; do :; done
                [ "$last" = --cpr-probe ] && exec \(Binaries.cprvmm) "$@"
                kill -KILL $$
                """)
            defer { unlink(crash) }
            let cprctl = Binaries.directory.appendingPathComponent("cprctl").path
            let started = Date()
            let result = try runTool(cprctl, ["update", "--socket", vm.qmp, "--binary", crash, "--timeout", "120"])
            #expect(result.status == 1)
            #expect(result.output.contains("live update failed: the VMM (pid \(vm.process.pid)) exited during the update"), "\(result.output)")
            // Told when it happened, not when the 120 s ran out.
            #expect(Date().timeIntervalSince(started) < 60, "cprctl waited for its timeout")
            #expect(vm.process.waitForExit(timeout: 10) != nil)
        }

        @Test("cprctl update reports a refusal at once each time, also when it repeats the one before")
        func repeatedRefusals() throws {
            let vm = try LU.start()
            defer { _ = vm.process.terminate() }
            // Answers the probe with a refusal (it knows no such option): the same reason twice.
            let refuses = try Self.script("exec \(Binaries.cprvmm) -bogus \"$@\"")
            defer { unlink(refuses) }
            let cprctl = Binaries.directory.appendingPathComponent("cprctl").path
            for attempt in 1...2 {
                let started = Date()
                let result = try runTool(cprctl, ["update", "--socket", vm.qmp, "--binary", refuses, "--timeout", "120"])
                #expect(result.status == 1)
                #expect(result.output.contains("live update failed: cpr-exec-command:"), "attempt \(attempt): \(result.output)")
                #expect(Date().timeIntervalSince(started) < 60, "attempt \(attempt): cprctl waited for its timeout")
            }
        }

        @Test("the probe goes through a prefix command, and --cpr-probe itself starts no VM")
        func probeThroughPrefix() throws {
            let direct = try runCprvmm(["-m", "16", "--cpr-probe"])
            #expect(direct.status == 0, "\(direct.stderr)")
            #expect(direct.stdout.hasPrefix(#"{"cprvmm-probe": {"version": "#), "\(direct.stdout)")
            #expect(!direct.stdout.contains("tick") && !direct.stderr.contains("RAM pc.ram"), "the probe started a VM")
            let vm = try LU.start()
            let reason = try LU.updateFailure(vm, command: ["/usr/bin/env", "CPRVMM_X=1", Binaries.cprvmm] + vm.arguments + ["-bogus"])
            #expect(reason.contains("refuses its command line: -bogus: unknown option"), "\(reason)")
            try LU.update(vm, to: Binaries.cprvmm, prefix: ["/usr/bin/env", "CPRVMM_X=1"])
            _ = vm.process.terminate()
        }
    }
}
