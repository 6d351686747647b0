import Foundation
import Testing

extension VirtualMachines {
    /// Live updates in quick succession, and states near the limits of what a new image reads:
    /// none of it may cost the guest.
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason))
    struct UpdateLimitsTests {
        typealias LU = LiveUpdateTests

        @Test("back-to-back updates: each update's tasks are reaped as they exit, none piles up as a zombie")
        func backToBackUpdatesReapTheirTasks() throws {
            let vm = try LU.start(["-smp", "2"])
            var peak: [Int32] = []
            for _ in 0..<30 {
                try LU.update(vm, to: Binaries.cprvmm)
                let zombies = LU.zombieChildren(of: vm.process.pid)
                if zombies.count > peak.count { peak = zombies }
            }
            #expect(LU.generation(vm) == 30)
            // Reaped on SIGCHLD: at most the tasks of the update that just ended, caught
            // between their exit and the loop's read of the signal. A 1 s timer left dozens.
            #expect(peak.count <= 3, "zombie children after an update: \(peak)")
            LU.expectGuestIntact(vm)
            _ = vm.process.terminate()
        }

        @Test("a state file that runs out of space fails the update cleanly; the guest resumes on this image")
        func stateFileOutOfSpace() throws {
            let vm = try LU.start()
            // /dev/full: every write fails with ENOSPC, as a full file system's would.
            let reason = try LU.updateFailure(vm, command: [Binaries.cprvmm] + vm.arguments, uri: "file:/dev/full")
            #expect(reason.lowercased().contains("no space left on device"), "\(reason)")
            #expect(LU.generation(vm) == 0)
            LU.expectGuestIntact(vm)
            _ = vm.process.terminate()
        }

        @Test("a state the new image would refuse (4,100 command-line arguments) is refused before the pause; the VM runs on")
        func stateBeyondReaderLimitsIsRefusedBeforeThePause() throws {
            // Each argument is carried in the CPR state for a rollback; a reader takes 4,096.
            let vm = try LU.start(Array(repeating: "-no-user-config", count: 4100))
            let reason = try LU.updateFailure(vm, command: [Binaries.cprvmm] + vm.arguments)
            #expect(reason.contains("command-line arguments, more than a reader accepts; the update is refused before the pause"), "\(reason)")
            #expect(vm.process.process.isRunning, "\(vm.process.stderr.suffix(600))")
            #expect(LU.generation(vm) == 0)
            LU.expectGuestIntact(vm)
            _ = vm.process.terminate()
        }
    }
}
