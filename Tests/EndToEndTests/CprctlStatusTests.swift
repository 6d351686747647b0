import Foundation
import Testing

extension VirtualMachines {
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason))
    struct CprctlStatusTests {
        static var cprctl: String { Binaries.directory.appendingPathComponent("cprctl").path }

        /// A runtime directory of our own, so the tests never touch /run/cprvmm.
        static func runtimeDirectory() throws -> String {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-run-\(UInt32.random(in: 0...UInt32.max))").path
            try FileManager.default.createDirectory(atPath: dir + "/web1", withIntermediateDirectories: true)
            return dir
        }

        static func cprctl(_ arguments: [String], runtime: String) throws -> (status: Int32, output: String) {
            try runTool("/usr/bin/env", ["CPRVMM_RUNTIME_DIR=\(runtime)", cprctl] + arguments)
        }

        @Test("cprctl status NAME shows the VM at a glance, through the runtime-directory convention")
        func humanStatus() throws {
            let runtime = try Self.runtimeDirectory()
            defer { try? FileManager.default.removeItem(atPath: runtime) }
            let qmp = runtime + "/web1/qmp.sock"
            let vm = try VMProcess([
                "-name", "web1", "-m", "32", "-smp", "2", "-machine", "memfd-alloc=on", "-serial", "null",
                "-qmp", "unix:\(qmp),server=on,wait=off",
            ])
            defer { _ = vm.terminate() }
            _ = try connectWhenListening(qmp)
            let result = try Self.cprctl(["status", "web1"], runtime: runtime)
            #expect(result.status == 0, "\(result.output)")
            let text = result.output
            #expect(text.hasPrefix("web1: running\n"), "\(text)")
            #expect(text.contains("PID:          \(vm.pid)\n"), "\(text)")
            #expect(text.contains("Binary:       \(Binaries.directory.resolvingSymlinksInPath().path)/cprvmm"), "\(text)")
            #expect(text.contains("vCPUs:        2\n"))
            #expect(text.contains("pc.ram 32 MiB memfd, shared"), "\(text)")
            #expect(text.contains("QMP socket:   \(qmp)"))
            #expect(text.contains("build id \(try cprvmmBuildID())"))

            // With one VM in the runtime directory, the name may be left out.
            let implicit = try Self.cprctl(["status"], runtime: runtime)
            #expect(implicit.status == 0 && implicit.output.hasPrefix("web1: running\n"), "\(implicit.output)")
        }

        @Test("cprctl list shows every VM of the runtime directory; stop and cont pause and resume one")
        func listStopCont() throws {
            let runtime = try Self.runtimeDirectory()
            defer { try? FileManager.default.removeItem(atPath: runtime) }
            try FileManager.default.createDirectory(atPath: runtime + "/web2", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: runtime + "/gone", withIntermediateDirectories: true)
            var vms: [VMProcess] = []
            defer { for vm in vms { _ = vm.terminate() } }
            for name in ["web1", "web2"] {
                let qmp = runtime + "/\(name)/qmp.sock"
                vms.append(try VMProcess(["-name", name, "-m", "32", "-serial", "null", "-qmp", "unix:\(qmp),server=on,wait=off"]))
                _ = try connectWhenListening(qmp)
            }
            // A socket file nobody listens on any more (its VM died): listed as unreachable.
            _ = try runTool("/usr/bin/python3", ["-c", "import socket; socket.socket(socket.AF_UNIX).bind('\(runtime)/gone/qmp.sock')"])

            let stop = try Self.cprctl(["stop", "web2"], runtime: runtime)
            #expect(stop.status == 0 && stop.output == "web2: paused\n", "\(stop.output)")
            let list = try Self.cprctl(["list"], runtime: runtime)
            #expect(list.status == 0, "\(list.output)")
            let lines = list.output.split(separator: "\n").map(String.init)
            #expect(lines.first?.hasPrefix("NAME") == true, "\(list.output)")
            #expect(lines.contains { $0.hasPrefix("web1") && $0.contains("running") && $0.contains("\(vms[0].pid)") }, "\(list.output)")
            #expect(lines.contains { $0.hasPrefix("web2") && $0.contains("paused") && $0.contains("\(vms[1].pid)") }, "\(list.output)")
            #expect(lines.contains { $0.hasPrefix("gone") && $0.contains("unreachable") }, "\(list.output)")
            let json = try Self.cprctl(["list", "--json"], runtime: runtime)
            let rows = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [[String: Any]])
            #expect(rows.count == 3 && rows.contains { $0["name"] as? String == "web2" && $0["status"] as? String == "paused" })
            let cont = try Self.cprctl(["cont", "web2", "--json"], runtime: runtime)
            #expect(cont.status == 0 && cont.output == #"{"name": "web2", "status": "running"}"# + "\n", "\(cont.output)")
        }

        @Test("cprctl update --all live-updates every VM one after another; a failure stops it unless --keep-going")
        func updateAll() throws {
            let runtime = try Self.runtimeDirectory()
            defer { try? FileManager.default.removeItem(atPath: runtime) }
            try FileManager.default.createDirectory(atPath: runtime + "/web2", withIntermediateDirectories: true)
            var vms: [VMProcess] = []
            defer { for vm in vms { _ = vm.terminate() } }
            for name in ["web1", "web2"] {
                let qmp = runtime + "/\(name)/qmp.sock"
                vms.append(try VMProcess(["-name", name, "-m", "32", "-machine", "memfd-alloc=on", "-serial", "null", "-qmp", "unix:\(qmp),server=on,wait=off"]))
                _ = try connectWhenListening(qmp)
            }
            let result = try Self.cprctl(["update", "--all", "--timeout", "60"], runtime: runtime)
            #expect(result.status == 0, "\(result.output)")
            for name in ["web1", "web2"] {
                #expect(LiveUpdateTests.generation(qmp: runtime + "/\(name)/qmp.sock") == 1, "\(name): \(result.output)")
                #expect(result.output.contains("\(name): "), "\(result.output)")
            }
            // --json: one record per VM, naming it, with the new generation and the pause.
            let json = try Self.cprctl(["update", "--all", "--json", "--timeout", "60"], runtime: runtime)
            let records = json.output.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            #expect(json.status == 0 && records.map { $0["name"] as? String } == ["web1", "web2"], "\(json.output)")
            #expect(records.allSatisfy { ($0["generation"] as? NSNumber)?.intValue == 2 && $0["pause-us"] != nil }, "\(json.output)")
            let failed = try Self.cprctl(["update", "--all", "--binary", "/nonexistent/cprvmm"], runtime: runtime)
            #expect(failed.status == 1)
            #expect(failed.output.contains("web1: ") && failed.output.contains("stopped after web1 failed: 1 VM(s) not updated (web2); --keep-going updates the others"), "\(failed.output)")
            let going = try Self.cprctl(["update", "--all", "--keep-going", "--binary", "/nonexistent/cprvmm"], runtime: runtime)
            #expect(going.status == 1 && going.output.contains("web2: "), "\(going.output)")
            #expect(vms.allSatisfy { $0.process.isRunning })
        }

        @Test("cprctl status --json reports the same facts as JSON; --socket reaches a VM directly")
        func jsonStatus() throws {
            let runtime = try Self.runtimeDirectory()
            defer { try? FileManager.default.removeItem(atPath: runtime) }
            let qmp = temporarySocketPath("cprctl")
            let vm = try VMProcess(["-m", "32", "-serial", "null", "-qmp", "unix:\(qmp),server=on,wait=off"])
            defer { _ = vm.terminate() }
            let client = try connectWhenListening(qmp)
            #expect(client.execute(#"{"execute": "stop"}"#) == #"{"return": {}}"#)
            let result = try Self.cprctl(["status", "--socket", qmp, "--json"], runtime: runtime)
            #expect(result.status == 0, "\(result.output)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
            #expect(object["status"] as? String == "paused")
            #expect(object["running"] as? Bool == false)
            #expect((object["pid"] as? NSNumber)?.int32Value == vm.pid)
            #expect(object["name"] is NSNull)
            let memory = try #require(object["memory"] as? [[String: Any]])
            #expect(memory.first?["id"] as? String == "pc.ram")
            #expect(memory.first?["backing"] as? String == "anonymous")
            #expect((object["vm-uptime-ms"] as? NSNumber)?.intValue ?? -1 >= 0)
            let sockets = try #require(object["sockets"] as? [String: Any])
            #expect(sockets["qmp"] as? [String] == [qmp])
        }

        @Test("cprctl status says clearly when no VM runs")
        func nothingRunning() throws {
            let runtime = try Self.runtimeDirectory()
            defer { try? FileManager.default.removeItem(atPath: runtime) }
            let named = try Self.cprctl(["status", "nothere"], runtime: runtime)
            #expect(named.status == 1)
            #expect(named.output == "cprctl: cannot connect to \(runtime)/nothere/qmp.sock: no such file (is the VM running?)\n", "\(named.output)")
            let socket = try Self.cprctl(["status", "--socket", "/nonexistent/qmp.sock"], runtime: runtime)
            #expect(socket.status == 1)
            #expect(socket.output == "cprctl: cannot connect to /nonexistent/qmp.sock: no such file (is the VM running?)\n")
        }
    }
}

/// The build id the built cprvmm reports.
func cprvmmBuildID() throws -> String {
    let line = try runCprvmm(["--version"]).stdout
    return line.components(separatedBy: "(build id ").last?.prefix { $0.isHexDigit }.description ?? ""
}
