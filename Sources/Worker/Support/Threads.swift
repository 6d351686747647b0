import Glibc

/// Runs `body` on a new detached pthread (migration streams: long blocking I/O that must
/// neither block the event loop nor run on a Swift concurrency pool).
func spawnDetachedThread(_ body: @escaping () -> Void) throws(SystemError) {
    final class Box { let body: () -> Void; init(_ body: @escaping () -> Void) { self.body = body } }
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(&thread, nil, { raw in
        Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, context)
    guard result == 0 else {
        Unmanaged<Box>.fromOpaque(context).release()
        throw SystemError("pthread_create", errno: result)
    }
    pthread_detach(thread)
}

/// Sleeps this thread for `nanoseconds`, resuming after a signal (vCPU kicks) until the time is up.
func sleepNanoseconds(_ nanoseconds: UInt64) {
    var remaining = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
    while true {
        var request = remaining
        guard nanosleep(&request, &remaining) != 0, errno == EINTR else { return }
    }
}
