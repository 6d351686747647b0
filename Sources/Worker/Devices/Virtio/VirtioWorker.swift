import CLinux
import Glibc

/// A virtio device's own thread: it sleeps in epoll on the queues' kick eventfds (which KVM
/// signals through ioeventfds, without a vCPU exit) and serves requests, never on a vCPU
/// thread. `quiesce` returns once no request is being served and none will start; the
/// requests the driver queued meanwhile stay in the available ring (and their kicks in the
/// eventfds) for `resume`, here or in the next image.
final class VirtioWorker {
    let kickFDs: [Int32]
    private let controlFD: Int32
    private let epollFD: Int32
    private let gate = Lock()
    private let idle = Condition()
    /// Starts quiesced: the machine resumes its devices when the VM runs.
    private var quiesced = true
    private var busy = false
    private var stopping = false
    private var running = false
    weak var transport: VirtioPciTransport?
    /// Fds added with `addWatched` and whether they are watched now (device thread only).
    private var watched: [Int32: Bool] = [:]

    init(queues: Int) throws {
        var fds: [Int32] = []
        do {
            for _ in 0..<queues {
                let fd = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
                guard fd >= 0 else { throw SystemError("eventfd", errno: errno) }
                fds.append(fd)
            }
            controlFD = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
            guard controlFD >= 0 else { throw SystemError("eventfd", errno: errno) }
            epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
            guard epollFD >= 0 else { throw SystemError("epoll_create1", errno: errno) }
        } catch {
            for fd in fds { close(fd) }
            throw error
        }
        kickFDs = fds
        for fd in fds + [controlFD] {
            var event = epoll_event()
            event.events = CLINUX_EPOLLIN
            event.data.fd = fd
            guard epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) == 0 else { throw SystemError("epoll_ctl", errno: errno) }
        }
    }

    deinit {
        for fd in kickFDs + [controlFD, epollFD] { close(fd) }
    }

    func start() throws {
        gate.withLock { running = true }
        try spawnDetachedThread { [self] in loop() }
    }

    /// Another fd whose readiness wakes the thread (a NIC's tap), watched from the start.
    /// The thread does not read it: the device does, and turns the watch off with `watch`
    /// while it cannot take more (level-triggered, it would wake the thread in a loop).
    func addWatched(_ fd: Int32) throws {
        var event = epoll_event()
        event.events = CLINUX_EPOLLIN
        event.data.fd = fd
        guard epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) == 0 else { throw SystemError("epoll_ctl", errno: errno) }
        watched[fd] = true
    }

    /// Turns the watch on an added fd on or off; called on the device thread.
    func watch(_ fd: Int32, _ on: Bool) {
        guard let current = watched[fd], current != on else { return }
        var event = epoll_event()
        event.events = on ? CLINUX_EPOLLIN : 0
        event.data.fd = fd
        if epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &event) == 0 { watched[fd] = on }
    }

    /// A kick that did not come through the ioeventfd (an MMIO exit).
    func kick(_ queue: Int) {
        var one: UInt64 = 1
        _ = write(kickFDs[queue], &one, 8)
    }

    func quiesce() {
        gate.withLock {
            quiesced = true
            while busy { idle.wait(gate) }
        }
    }

    /// Serves whatever is queued, whether or not its kick is still counted.
    func resume() {
        gate.withLock { quiesced = false }
        var one: UInt64 = 1
        _ = write(controlFD, &one, 8)
    }

    /// Ends the thread (the VM is going away) and waits for it.
    func stop() {
        gate.withLock {
            stopping = true
            quiesced = true
        }
        var one: UInt64 = 1
        _ = write(controlFD, &one, 8)
        gate.withLock { while running { idle.wait(gate) } }
    }

    /// Checked between requests: a quiesce waits for at most the request being served.
    var shouldYield: Bool { gate.withLock { quiesced } }

    private func loop() {
        var events = [epoll_event](repeating: epoll_event(), count: 8)
        while true {
            let count = epoll_wait(epollFD, &events, Int32(events.count), -1)
            if count < 0 && errno != EINTR { break }
            var counter: UInt64 = 0
            for fd in kickFDs + [controlFD] { _ = read(fd, &counter, 8) }
            let proceed: Bool = gate.withLock {
                if stopping { return false }
                if quiesced { return true }
                busy = true
                return true
            }
            guard proceed else { break }
            if gate.withLock({ busy }) {
                transport?.processQueues()
                gate.withLock {
                    busy = false
                    idle.broadcast()
                }
            }
        }
        gate.withLock {
            running = false
            idle.broadcast()
        }
    }
}
