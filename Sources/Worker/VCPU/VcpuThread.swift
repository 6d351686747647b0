import CKVM
import CLinux
import Glibc

/// One vCPU on its own pthread (never a Swift concurrency task: KVM_RUN blocks for long and
/// must be interruptible by a signal aimed at exactly this thread).
final class VcpuThread {
    /// The kick signal. Its handler does nothing: its only job is to make KVM_RUN return EINTR.
    static let kickSignal = SIGUSR1

    let vcpu: VcpuFd
    private weak var handler: VcpuExitHandler?
    private let lock = Lock()
    private let changed = Condition()
    private var requested: VcpuRunState = .paused
    private var acknowledged: VcpuRunState?
    private var haltProbeRequested = false
    private var thread = pthread_t()
    private var started = false
    /// The kernel thread id, once the thread runs (QMP's query-cpus-fast reports it).
    var threadID: Int32 { lock.withLock { tid } }
    private var tid: Int32 = 0
    /// Exits taken so far; the halt watchdog reads it to spot vCPUs that never exit.
    private(set) var exitCount: UInt64 = 0
    /// Auto-converge (MigrationThrottle): how long the vCPU sleeps after each throttle kick.
    private var throttleSleepNanoseconds: UInt64 = 0

    init(vcpu: VcpuFd, handler: VcpuExitHandler) {
        self.vcpu = vcpu
        self.handler = handler
    }

    /// Installs the kick handler once per process; must run before any vCPU thread starts.
    static func installKickHandler() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        action.sa_flags = 0  // no SA_RESTART: the interrupted KVM_RUN must return EINTR
        sigemptyset(&action.sa_mask)
        sigaction(kickSignal, &action, nil)
    }

    /// Starts the thread, paused; `request(.running)` lets it enter the guest.
    func start() throws(SystemError) {
        let context = Unmanaged.passRetained(self).toOpaque()
        let result = pthread_create(&thread, nil, { raw in
            let me = Unmanaged<VcpuThread>.fromOpaque(raw!).takeRetainedValue()
            me.threadMain()
            return nil
        }, context)
        guard result == 0 else {
            Unmanaged<VcpuThread>.fromOpaque(context).release()
            throw SystemError("pthread_create for vCPU \(vcpu.index)", errno: result)
        }
        started = true
    }

    /// Asks for a state and, unless running, kicks the vCPU out of KVM_RUN. Returns at once.
    func request(_ state: VcpuRunState) {
        lock.withLock {
            guard acknowledged != .stopped else { return }
            requested = state
            if state != .running { kickLocked() }
            changed.broadcast()
        }
    }

    /// Blocks until the thread acknowledges `state` (or has stopped for good).
    func wait(for state: VcpuRunState) {
        lock.withLock {
            while acknowledged != state && acknowledged != .stopped { changed.wait(lock) }
        }
    }

    /// Asks the thread to check whether it is halted with interrupts off, if it seems idle.
    func probeForHalt(previousExitCount: UInt64) {
        lock.withLock {
            guard acknowledged == .running, exitCount == previousExitCount else { return }
            haltProbeRequested = true
            kickLocked()
        }
    }

    /// Auto-converge: kicks the vCPU out of the guest and has it sleep `nanoseconds` before it
    /// goes on (0: no more sleeping, and a sleep under way ends). Any state request (a pause)
    /// ends a sleep too.
    func throttle(sleeping nanoseconds: UInt64) {
        lock.withLock {
            throttleSleepNanoseconds = nanoseconds
            if nanoseconds > 0 && acknowledged == .running { kickLocked() }
            if nanoseconds == 0 { changed.broadcast() }
        }
    }

    func join() {
        guard started else { return }
        pthread_join(thread, nil)
        started = false
    }

    private func kickLocked() {
        vcpu.requestImmediateExit(true)
        if started { pthread_kill(thread, VcpuThread.kickSignal) }
    }

    private func threadMain() {
        lock.withLock { tid = clinux_gettid() }
        var mask = sigset_t()
        sigemptyset(&mask)
        sigaddset(&mask, VcpuThread.kickSignal)
        pthread_sigmask(SIG_UNBLOCK, &mask, nil)

        while true {
            guard case .run(let probe) = nextStep() else { return }
            if probe && checkHaltedForever() { park(); continue }
            if !runUntilInterrupted() { park(); continue }
            lock.withLock {
                guard requested == .running, throttleSleepNanoseconds > 0 else { return }
                let deadline = monotonicNanoseconds() + throttleSleepNanoseconds
                while requested == .running && throttleSleepNanoseconds > 0 && monotonicNanoseconds() < deadline {
                    changed.wait(lock, untilMonotonic: deadline)
                }
            }
        }
    }

    private enum Step { case exit, run(probe: Bool) }

    /// Waits in the requested state until it is `running` (or the thread must end).
    /// immediate_exit is cleared under the lock, so a kick that comes after this point
    /// cannot be lost: it sets the flag again and KVM_RUN returns at once.
    private func nextStep() -> Step {
        lock.withLock {
            while true {
                if requested == .stopped || acknowledged == .stopped {
                    acknowledged = .stopped
                    changed.broadcast()
                    return .exit
                }
                if requested == .running { break }
                if acknowledged != .paused {
                    acknowledged = .paused
                    changed.broadcast()
                }
                changed.wait(lock)
            }
            if acknowledged != .running {
                acknowledged = .running
                changed.broadcast()
            }
            vcpu.requestImmediateExit(false)
            defer { haltProbeRequested = false }
            return .run(probe: haltProbeRequested)
        }
    }

    /// Runs the guest until a kick; false when the machine asked this vCPU to park.
    private func runUntilInterrupted() -> Bool {
        while true {
            let exit: VcpuExit
            do {
                exit = try vcpu.runOnce()
            } catch {
                handler?.vcpuFailed(vcpu, error: error)
                return false
            }
            exitCount &+= 1
            if case .interrupted = exit { return true }
            guard let handler, case .resume = handler.handle(exit, on: vcpu) else { return false }
        }
    }

    private func checkHaltedForever() -> Bool {
        guard let state = try? vcpu.getMPState(), state == CKVM_MP_STATE_HALTED,
              let regs = try? vcpu.getRegisters(), regs.rflags & 0x200 == 0 else { return false }
        handler?.vcpuHaltedForever(vcpu)
        return true
    }

    /// Stops running this vCPU for good; the machine is told through the handler.
    private func park() {
        lock.withLock {
            acknowledged = .stopped
            changed.broadcast()
        }
    }
}
