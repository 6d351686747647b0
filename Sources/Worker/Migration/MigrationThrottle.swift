import Glibc

/// Auto-converge (QEMU's cpu-throttle): while a pre-copy migration cannot keep up with the
/// guest's writes, every vCPU is taken out of the guest every 10 ms of running and sleeps for
/// the throttled share, so at P% a vCPU runs 10 ms then sleeps P/(100-P)·10 ms.
final class MigrationThrottle {
    static let timesliceNanoseconds: UInt64 = 10_000_000
    private let vcpus: [VcpuThread]
    private let lock = Lock()
    private var percent: UInt64 = 0
    private var running = false

    init(vcpus: [VcpuThread]) { self.vcpus = vcpus }

    var currentPercent: UInt64 { lock.withLock { percent } }

    /// Throttles the vCPUs to `newPercent` (0 ends throttling). Starts the kicker thread once.
    func set(percent newPercent: UInt64) {
        let start: Bool = lock.withLock {
            percent = min(newPercent, 99)
            guard percent > 0, !running else { return false }
            running = true
            return true
        }
        if start {
            do {
                try spawnDetachedThread { [self] in kickLoop() }
            } catch {
                lock.withLock { running = false; percent = 0 }
                Log.warning("auto-converge: cannot start the throttle thread: \(error); the guest runs unthrottled")
            }
        }
        if newPercent == 0 { for vcpu in vcpus { vcpu.throttle(sleeping: 0) } }
    }

    private func kickLoop() {
        while true {
            let current: UInt64 = lock.withLock {
                if percent == 0 { running = false }
                return percent
            }
            guard current > 0 else { break }
            let sleep = MigrationThrottle.timesliceNanoseconds * current / (100 - current)
            for vcpu in vcpus { vcpu.throttle(sleeping: sleep) }
            // The vCPUs run one timeslice after their sleep before the next kick.
            let period = MigrationThrottle.timesliceNanoseconds + sleep
            sleepNanoseconds(period)
        }
        for vcpu in vcpus { vcpu.throttle(sleeping: 0) }
    }
}
