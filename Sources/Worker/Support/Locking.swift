import Glibc

/// A pthread mutex with a stable address (Swift may move a struct; pthread objects must not move).
/// vCPU threads are real pthreads, not Swift concurrency tasks, so the locks are too.
final class Lock: @unchecked Sendable {
    fileprivate let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always)
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// A condition variable bound to a `Lock`; wait only while holding that lock.
final class Condition: @unchecked Sendable {
    private let cond: UnsafeMutablePointer<pthread_cond_t>

    init() {
        cond = .allocate(capacity: 1)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        // Monotonic, so a wall-clock jump cannot stretch or cut a timed wait.
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        cond.deallocate()
    }

    func wait(_ lock: Lock) { pthread_cond_wait(cond, lock.mutex) }
    func broadcast() { pthread_cond_broadcast(cond) }

    /// Waits until a broadcast or until CLOCK_MONOTONIC reaches `deadline` (ns), whichever first.
    func wait(_ lock: Lock, untilMonotonic deadline: UInt64) {
        var time = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        pthread_cond_timedwait(cond, lock.mutex, &time)
    }
}
