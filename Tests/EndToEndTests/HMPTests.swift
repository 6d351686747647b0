import Foundation
import Testing

extension VirtualMachines {
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason))
    struct HMPTests {
        @Test("-monitor stdio: prompt, info status, stop/cont, help, quit")
        func stdioMonitor() throws {
            let console = FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-console-\(UUID().uuidString)").path
            defer { unlink(console) }
            let vm = try VMProcess(["-m", "32", "-name", "hmp-test", "-monitor", "stdio", "-serial", "file:\(console)"])
            vm.waitForLine(containing: "(cprvmm) ")
            #expect(vm.stdout.hasPrefix("cprvmm \(try cprvmmVersion()) monitor - type 'help' for more information\n(cprvmm) "))
            vm.sendInput("info status\n")
            vm.waitForLine(containing: "VM status: running\n(cprvmm) ")
            vm.sendInput("stop\ninfo status\n")
            vm.waitForLine(containing: "VM status: paused\n(cprvmm) ")
            vm.sendInput("c\ninfo status\ninfo name\n")
            vm.waitForOutput("running again") { $0.components(separatedBy: "VM status: running").count == 3 }
            vm.waitForLine(containing: "hmp-test\n(cprvmm) ")
            vm.sendInput("help\n")
            vm.waitForLine(containing: "info memdev -- show memory backends")
            vm.sendInput("frobnicate\n")
            vm.waitForLine(containing: "unknown command: 'frobnicate'")
            vm.sendInput("quit\n")
            #expect(vm.waitForExit() == 0)
            // The guest ran on its own console meanwhile.
            let text = (try? String(contentsOfFile: console, encoding: .utf8)) ?? ""
            #expect(text.contains("tick "))
        }

        @Test("-monitor unix:PATH serves HMP to socket clients; info cpus, info memdev, info registers")
        func socketMonitor() throws {
            let path = temporarySocketPath("hmp")
            let vm = try VMProcess([
                "-m", "32", "-smp", "2", "-machine", "memfd-alloc=on", "-serial", "null",
                "-monitor", "unix:\(path),server=on,wait=off",
            ])
            defer { _ = vm.terminate() }
            waitForSocket(path)
            var client: UnixClient?
            let deadline = Date().addingTimeInterval(30)
            while client == nil && Date() < deadline {
                client = try? UnixClient(path: path)
                if client == nil { usleep(50_000) }
            }
            let monitor = try #require(client)
            #expect(monitor.read(until: "(cprvmm) ", timeout: 20).contains("monitor - type 'help'"))
            monitor.write("info cpus\r\n")
            let cpus = monitor.read(until: "CPU #1: thread_id=", timeout: 20)
            #expect(cpus.contains("* CPU #0: thread_id="))
            monitor.write("info memdev\n")
            let memdev = monitor.read(until: "policy:", timeout: 20)
            #expect(memdev.contains("memory backend: pc.ram"))
            #expect(memdev.contains("size:  33554432"))
            #expect(memdev.contains("share:  true"))
            #expect(memdev.contains("backing:  memfd"))
            monitor.write("info version\n")
            #expect(monitor.read(until: "build id", timeout: 20).contains("(cprvmm, build id "))
            // Registers of a running VM: read with the vCPUs briefly out of KVM_RUN, which
            // leaves the VM running (no STOP). Both vCPUs run the built-in guest in long mode.
            monitor.write("info registers\ninfo status\n")
            let output = monitor.read(until: "VM status: running", timeout: 20)
            let registers = output.components(separatedBy: "(cprvmm, build id ").last ?? ""
            #expect(registers.contains("CPU#0\nRAX="), "\(registers)")
            #expect(registers.contains("CPU#1\nRAX="), "\(registers)")
            #expect(registers.components(separatedBy: "EFER=0000000000000500").count == 3, "\(registers)")
            #expect(registers.contains("VM status: running"))
        }

        @Test("-monitor stdio cannot share stdio with an explicit -serial stdio")
        func stdioConflict() throws {
            let result = try runCprvmm(["-monitor", "stdio", "-serial", "stdio"])
            #expect(result.status == 1)
            #expect(result.stderr == "cprvmm: -monitor stdio: stdio is already used by -serial stdio (put one of them on a unix: socket)\n")
        }
    }
}

/// The version the built cprvmm reports.
func cprvmmVersion() throws -> String {
    let line = try runCprvmm(["--version"]).stdout
    return line.components(separatedBy: " ")[safe: 2] ?? ""
}
