import Foundation
import Testing

extension VirtualMachines {
    /// Guests that misbehave on purpose: whatever they do, they stop only themselves.
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason))
    struct HostileGuestTests {
        @Test("4 vCPUs, at CPL0 and CPL3, doing random port I/O, MMIO, MSR and CPUID: cprvmm keeps answering QMP, logs rate-limited, takes a live update")
        func randomAccessesOnFourVcpus() throws {
            let kernel = try GuestBuilder.kernel("chaos-kernel")
            let options = ["-kernel", kernel, "-m", "64", "-smp", "4", "-machine", "memfd-alloc=on", "-serial", "null"]
            let vm = try LiveUpdateTests.start(options, options: [])
            let started = Date()
            var answers = 0
            while Date().timeIntervalSince(started) < 4 {
                let status = try LiveUpdateTests.query(vm, "query-status")
                #expect(status["status"] as? String == "running", "\(status)")
                answers += 1
                usleep(200_000)
            }
            #expect(answers >= 5, "QMP answered \(answers) times in 4 s")
            // A live update while every vCPU keeps hitting exits only an image can serve.
            try LiveUpdateTests.update(vm, to: Binaries.cprvmm, uri: "memfd:")
            usleep(1_000_000)
            #expect(try LiveUpdateTests.query(vm, "query-status")["status"] as? String == "running")
            #expect(vm.process.terminate() == 0, "\(vm.process.stderr.suffix(2000))")
            let seconds = Date().timeIntervalSince(started)
            let lines = vm.process.stderr.split(separator: "\n")
            // Each rate limiter lets 10 lines a second through, plus one line per window for
            // what it held back: a few dozen a second in all, whatever the guest does.
            #expect(Double(lines.count) < 60 * (seconds + 2), "\(lines.count) log lines in \(Int(seconds)) s")
            #expect(lines.contains { $0.contains("similar messages suppressed") })
            #expect(lines.contains { $0.contains("unknown I/O port") } && lines.contains { $0.contains("hits no device") })
        }

        @Test("a guest that writes garbage to every register, BAR and ring of its disk breaks only its disk: cprvmm serves QMP, saves and loads the device in a live update")
        func garbageIntoTheDisk() throws {
            let kernel = try GuestBuilder.kernel("virtio-chaos-kernel")
            let disk = try GuestBuilder.temporaryDirectory().appendingPathComponent("disk.img").path
            try Data(count: 1 << 20).write(to: URL(fileURLWithPath: disk))
            let options = ["-kernel", kernel, "-m", "64", "-machine", "memfd-alloc=on", "-drive", "file=\(disk),format=raw,if=virtio", "-serial", "stdio"]
            let vm = try LiveUpdateTests.start(options, options: [])
            defer { _ = vm.process.terminate() }
            let dots = { (text: String) in text.filter { $0 == "." }.count }
            #expect(vm.process.waitForOutput(timeout: 60, "4 dots") { dots($0) >= 4 }, "\(vm.process.stderr.suffix(1500))")
            #expect(try LiveUpdateTests.query(vm, "query-status")["status"] as? String == "running")
            let client = try connectWhenListening(vm.qmp)
            #expect(client.execute(#"{"execute": "query-block"}"#)?.contains(#""device": "virtio0""#) == true)
            // Whatever state the guest left the device in is saved, handed over and loaded.
            try LiveUpdateTests.update(vm, to: Binaries.cprvmm, uri: "memfd:")
            let before = dots(vm.process.stdout)
            #expect(vm.process.waitForOutput(timeout: 60, "more dots") { dots($0) >= before + 2 }, "the guest stopped after the update")
            #expect(vm.process.process.isRunning)
            let log = vm.process.stderr
            #expect(log.contains("the device needs a reset"), "\(log.suffix(1500))")
            #expect(log.contains("similar messages suppressed"))
        }
    }
}
