import Glibc
import Shared
import Testing

/// QMPClient against sockets that are not QMP servers: what an operator sees when the VM
/// is not there, not listening, or stuck.
@Suite struct QMPClientConnectTests {
    func connectError(_ path: String, timeout: Double = 2) -> QMPClientError? {
        do {
            _ = try QMPClient(path: path, timeoutSeconds: timeout)
            return nil
        } catch {
            return error
        }
    }

    @Test func missingSocket() {
        let path = "/nonexistent/cprvmm/web1/qmp.sock"
        let error = connectError(path)
        #expect(error == .connect(path: path, errno: ENOENT))
        #expect(error?.description == "cannot connect to \(path): no such file (is the VM running?)")
    }

    @Test func socketFileNobodyListensOn() {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        directory.makeSocketFile("qmp.sock")
        let path = directory.path + "/qmp.sock"
        let error = connectError(path)
        #expect(error == .connect(path: path, errno: ECONNREFUSED))
        #expect(error?.description == "cannot connect to \(path): connection refused (is the VM running?)")
    }

    @Test func regularFileIsRefused() {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        directory.makeFile("qmp.sock")
        #expect(connectError(directory.path + "/qmp.sock") == .connect(path: directory.path + "/qmp.sock", errno: ECONNREFUSED))
    }

    @Test func pathTooLongForAUnixSocket() {
        let path = "/tmp/" + String(repeating: "x", count: 200)
        #expect(connectError(path)?.description == "cannot connect to \(path): file name too long")
    }

    @Test func silentServerTimesOut() {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.path + "/qmp.sock"
        let fd = listeningSilentSocket(path)
        #expect(fd >= 0)
        defer { close(fd) }
        let started = monotonicSeconds()
        let error = connectError(path, timeout: 0.2)
        let elapsed = monotonicSeconds() - started
        #expect(error == .timeout(path: path, seconds: 0.2))
        #expect(error?.description == "no answer from \(path) within 0.2 s")
        #expect(elapsed >= 0.19 && elapsed < 2)
    }
}

/// Monotonic seconds, for measuring the timeout.
private func monotonicSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}
