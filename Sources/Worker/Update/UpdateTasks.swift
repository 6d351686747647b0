import CBridge
import Glibc

/// The tasks live updates leave as children of the process: teardown holders and vCPU bridges
/// (Sources/CBridge), this image's own and those an earlier image listed in the CPR state.
/// Reaped as they exit (SIGCHLD), so they never pile up however fast updates follow each other.
///
/// Tasks this image cloned into its own address space have their stacks here, unmapped once
/// they are reaped; and a mapping they read (the bridge region, after a failed exec) is
/// released only when all of them are gone. After a successful exec none of that applies:
/// the address space went with the old image.
final class UpdateTasks {
    private(set) var pids: [Int32] = []
    private var stacks: [Int32: UnsafeMutableRawPointer] = [:]
    private var pinned: [(pids: Set<Int32>, release: () -> Void)] = []
    static let stackSize = Int(CBRIDGE_STACK_SIZE)

    /// Another image's tasks, listed in the CPR state: reaped here, nothing else to free.
    func adopt(_ others: [Int32]) { pids += others }

    /// A task this image cloned, with its stack.
    func add(_ pid: Int32, stack: UnsafeMutableRawPointer?) {
        pids.append(pid)
        if let stack { stacks[pid] = stack }
    }

    /// Runs `release` once every one of `tasks` has been reaped.
    func whenExited(_ tasks: [Int32], _ release: @escaping () -> Void) {
        pinned.append((Set(tasks), release))
        reap()
    }

    /// Reaps those that exited; by pid, never waitpid(-1): migration's exec: children have
    /// their own owner.
    func reap() {
        var gone = Set<Int32>()
        pids.removeAll { pid in
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            guard result == pid || (result < 0 && errno == ECHILD) else { return false }
            gone.insert(pid)
            return true
        }
        guard !gone.isEmpty else { return }
        for pid in gone {
            // The task has exited: nothing runs on its stack any more.
            if let stack = stacks.removeValue(forKey: pid) { munmap(stack, UpdateTasks.stackSize) }
        }
        let live = Set(pids)
        pinned.removeAll { entry in
            guard entry.pids.isDisjoint(with: live) else { return false }
            entry.release()
            return true
        }
    }
}
