import CLinux
import Glibc

/// The VMM's one event thread: an epoll set of fds with a handler each (monitor sockets,
/// serial backends, signals, timers). vCPU threads never run here and are never blocked by it;
/// they talk to the loop through `post`, which wakes it via an eventfd.
final class EventLoop {
    typealias Handler = (UInt32) -> Void

    private let epollFD: Int32
    private let wakeFD: Int32
    private var handlers: [Int32: Handler] = [:]
    private let queueLock = Lock()
    private var queued: [() -> Void] = []
    private var stopped = false

    init() throws(SystemError) {
        epollFD = try retryingOnEINTR("epoll_create1", { epoll_create1(Int32(EPOLL_CLOEXEC)) })
        wakeFD = try retryingOnEINTR("eventfd", { eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK)) })
        try add(wakeFD, events: CLINUX_EPOLLIN) { [unowned self] _ in
            var counter: UInt64 = 0
            _ = read(wakeFD, &counter, 8)
            let work = queueLock.withLock { () -> [() -> Void] in
                defer { queued.removeAll() }
                return queued
            }
            for item in work { item() }
        }
    }

    deinit {
        close(epollFD)
        close(wakeFD)
    }

    func add(_ fd: Int32, events: UInt32, handler: @escaping Handler) throws(SystemError) {
        var event = epoll_event(events: events, data: epoll_data_t(fd: fd))
        try retryingOnEINTR("epoll_ctl add \(fd)", { epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) })
        handlers[fd] = handler
    }

    func modify(_ fd: Int32, events: UInt32) {
        var event = epoll_event(events: events, data: epoll_data_t(fd: fd))
        _ = epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &event)
    }

    func remove(_ fd: Int32) {
        _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil)
        handlers[fd] = nil
    }

    /// Runs `work` on the loop thread soon. Safe from any thread (vCPU threads use it).
    func post(_ work: @escaping () -> Void) {
        queueLock.withLock { queued.append(work) }
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    /// Runs `work` on the loop thread and waits for its result. Only from other threads
    /// (a migration thread changing the run state, for example): on the loop thread it would deadlock.
    func sync<T>(_ work: @escaping () -> T) -> T {
        let lock = Lock()
        let done = Condition()
        var result: T?
        post {
            let value = work()
            lock.withLock {
                result = value
                done.broadcast()
            }
        }
        return lock.withLock {
            while result == nil { done.wait(lock) }
            return result!
        }
    }

    /// Calls `handler` every `intervalMilliseconds` on the loop thread.
    func addTimer(intervalMilliseconds: Int, handler: @escaping () -> Void) throws(SystemError) {
        let fd = try retryingOnEINTR("timerfd_create", { timerfd_create(CLOCK_MONOTONIC, Int32(TFD_CLOEXEC | TFD_NONBLOCK)) })
        let interval = timespec(tv_sec: intervalMilliseconds / 1000, tv_nsec: (intervalMilliseconds % 1000) * 1_000_000)
        var spec = itimerspec(it_interval: interval, it_value: interval)
        try retryingOnEINTR("timerfd_settime", { timerfd_settime(fd, 0, &spec, nil) })
        try add(fd, events: CLINUX_EPOLLIN) { _ in
            var expirations: UInt64 = 0
            _ = read(fd, &expirations, 8)
            handler()
        }
    }

    /// Calls `handler` once, after `milliseconds`, unless `cancelTimeout` comes first.
    /// Returns the timer's fd, the handle for `cancelTimeout`.
    func addTimeout(milliseconds: Int, handler: @escaping () -> Void) throws(SystemError) -> Int32 {
        let fd = try retryingOnEINTR("timerfd_create", { timerfd_create(CLOCK_MONOTONIC, Int32(TFD_CLOEXEC | TFD_NONBLOCK)) })
        let value = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
        var spec = itimerspec(it_interval: timespec(), it_value: value)
        do {
            try retryingOnEINTR("timerfd_settime", { timerfd_settime(fd, 0, &spec, nil) })
            try add(fd, events: CLINUX_EPOLLIN) { [unowned self] _ in
                cancelTimeout(fd)
                handler()
            }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    func cancelTimeout(_ fd: Int32) {
        guard handlers[fd] != nil else { return }
        remove(fd)
        close(fd)
    }

    func stop() { stopped = true }

    /// Dispatches events until `stop()` is called from a handler or posted work.
    func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 32)
        while !stopped {
            let count = epoll_wait(epollFD, &events, Int32(events.count), -1)
            if count < 0 {
                if errno == EINTR { continue }
                Log.error("epoll_wait: \(SystemError.describe(errno))")
                return
            }
            for event in events.prefix(Int(count)) {
                // A handler may have removed a later fd in this batch; skip it then.
                handlers[event.data.fd]?(event.events)
                if stopped { break }
            }
        }
    }
}
