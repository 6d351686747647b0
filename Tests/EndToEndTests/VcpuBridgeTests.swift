import Foundation
import Testing

extension VirtualMachines {
    /// vCPU bridges: the guest runs on while the process execs and the new image builds its
    /// VM. A prefix command that sleeps 0.3 s before exec'ing the new image stretches that
    /// window far beyond any pause, so whether the guest waited through it is unmistakable.
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason))
    struct VcpuBridgeTests {
        /// A prefix command: sleeps, then execs the rest of its command line (the new image).
        static func slowStart() throws -> [String] {
            let path = try GuestBuilder.temporaryDirectory().appendingPathComponent("slow-start").path
            try "#!/bin/sh\nsleep 0.3\nexec \"$@\"\n".write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o755)
            return [path]
        }

        static func lastUpdate(_ vm: LiveUpdateTests.VM) throws -> [String: Any] {
            let updates = try LiveUpdateTests.query(vm)["updates"] as? [[String: Any]] ?? []
            return updates.last ?? [:]
        }

        static func microseconds(_ record: [String: Any], _ key: String) -> Int {
            (record[key] as? NSNumber)?.intValue ?? -1
        }

        @Test("the guest keeps running while the new image starts; with x-cpr-exec-bridges off it waits")
        func guestRunsAcrossTheExec() throws {
            let vm = try LiveUpdateTests.start()
            let pid = vm.process.pid
            let slowStart = try Self.slowStart()

            let ticksBefore = vm.process.lastTick
            try LiveUpdateTests.update(vm, to: Binaries.cprvmm, prefix: slowStart, uri: "memfd:")
            var record = try Self.lastUpdate(vm)
            #expect(Self.microseconds(record, "total-us") >= 300_000, "\(record)")
            // The pause is two short stops; 150 ms is far above them and far below the sleep.
            #expect(Self.microseconds(record, "pause-us") < 150_000, "the guest waited for the new image: \(record)")
            let phases = record["phases-us"] as? [String: Any] ?? [:]
            #expect(Self.microseconds(phases, "guest runs during exec and vm creation") >= 250_000, "\(phases)")
            // The ticks the guest printed meanwhile went through the bridges' log to the console.
            vm.process.waitForOutput("tick \(ticksBefore + 400)") { VMProcess.ticks(in: $0).last ?? 0 >= ticksBefore + 400 }
            #expect(vm.process.pid == pid)

            let client = try connectWhenListening(vm.qmp)
            #expect(client.execute(#"{"execute": "migrate-set-parameters", "arguments": {"x-cpr-exec-bridges": false}}"#) == #"{"return": {}}"#)
            #expect(client.execute(#"{"execute": "query-migrate-parameters"}"#)?.contains(#""x-cpr-exec-bridges": false"#) == true)
            try LiveUpdateTests.update(vm, to: Binaries.cprvmm, prefix: slowStart, uri: "memfd:")
            record = try Self.lastUpdate(vm)
            #expect(Self.microseconds(record, "pause-us") >= 300_000, "without bridges the guest must wait out the sleep: \(record)")

            LiveUpdateTests.expectGuestIntact(vm)
            // The bridge tasks ended with their update and were reaped.
            usleep(1_500_000)
            #expect(LiveUpdateTests.zombieChildren(of: pid).isEmpty, "zombies: \(LiveUpdateTests.zombieChildren(of: pid))")
            let children = LiveUpdateTests.children(of: pid)
            #expect(children.isEmpty, "tasks left behind: \(children)")
            _ = vm.process.terminate()
        }

        @Test("a port only an image can serve stops the bridge; the new image serves it and the guest goes on")
        func exitServedByTheNewImage() throws {
            let kernel = try GuestBuilder.kernel("port-reader-kernel")
            let qmp = temporarySocketPath("br")
            let arguments = ["-m", "64", "-machine", "memfd-alloc=on", "-kernel", kernel, "-qmp", "unix:\(qmp),server=on,wait=off"]
            let process = try VMProcess(arguments)
            _ = try connectWhenListening(qmp)
            let dots = { (text: String) in text.filter { $0 == "." }.count }
            process.waitForOutput("100 dots") { dots($0) >= 100 }
            let vm = LiveUpdateTests.VM(process: process, qmp: qmp, state: "", arguments: arguments)
            try LiveUpdateTests.update(vm, to: Binaries.cprvmm, prefix: try Self.slowStart(), uri: "memfd:")
            let record = try Self.lastUpdate(vm)
            let phases = record["phases-us"] as? [String: Any] ?? [:]
            // The vCPU reads port 0x278 every millisecond or so: it stopped there within a few ms
            // of the exec and waited out the slow start, and the pause says so.
            #expect(Self.microseconds(phases, "a vcpu waits for the handover") >= 200_000, "\(phases)")
            #expect(Self.microseconds(record, "pause-us") >= 200_000, "\(record)")
            let before = dots(process.stdout)
            process.waitForOutput("100 more dots") { dots($0) >= before + 100 }
            #expect(!process.stdout.contains("X"), "the guest read something else than 0xff from port 0x278")
            _ = process.terminate()
        }

        @Test("-smp 2: every vCPU goes through its own bridge; the guest's memory and ticks stay intact")
        func twoVcpus() throws {
            let vm = try LiveUpdateTests.start(options: LiveUpdateTests.options + ["-smp", "2"])
            for _ in 0..<3 { try LiveUpdateTests.update(vm, to: Binaries.cprvmm, uri: "memfd:") }
            let record = try Self.lastUpdate(vm)
            #expect((record["phases-us"] as? [String: Any])?["bridge handover"] != nil, "\(record)")
            LiveUpdateTests.expectGuestIntact(vm)
            _ = vm.process.terminate()
        }

        @Test("cprctl update --no-bridges: the guest stays paused across the exec, as for a binary older than bridges")
        func cprctlWithoutBridges() throws {
            let vm = try LiveUpdateTests.start()
            let cprctl = Binaries.directory.appendingPathComponent("cprctl").path
            let result = try runTool(cprctl, ["update", "--socket", vm.qmp, "--no-bridges"])
            #expect(result.status == 0, "\(result.output)")
            let phases = try Self.lastUpdate(vm)["phases-us"] as? [String: Any] ?? [:]
            #expect(phases["exec and runtime start"] != nil && phases["bridge handover"] == nil, "\(phases)")
            LiveUpdateTests.expectGuestIntact(vm)
            _ = vm.process.terminate()
        }
    }
}
