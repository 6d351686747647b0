import Glibc
import Shared
import Testing
@testable import Worker

@Suite struct MigrationChannelTests {
    // MARK: file:

    @Test func fileAtOffsetZeroTruncatesAndRoundTrips() throws {
        let dir = MigrationTestDirectory()
        defer { dir.remove() }
        let path = dir.path + "/state"
        writeFile(path, [UInt8](repeating: 0xAA, count: 200_000))   // longer than the stream: cut
        let stream = pattern(100_000, seed: 1)
        let uri = MigrationURI.file(path: path, offset: 0)
        let out = try OutgoingMigrationChannel(uri)
        try writeInPieces(out, stream)
        #expect(out.bytesWritten == 100_000)
        try out.finish()
        #expect(readFile(path) == stream)
        let incoming = try IncomingMigrationChannel(uri)
        #expect(incoming.listeningFD == nil)
        #expect(try readAll(incoming) == stream)
        incoming.close()
    }

    @Test func newFileIsOwnerOnly() throws {
        let dir = MigrationTestDirectory()
        defer { dir.remove() }
        let path = dir.path + "/state"
        let out = try OutgoingMigrationChannel(.file(path: path, offset: 0))
        try out.finish()
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
    }

    @Test func fileAtOffsetKeepsWhatLiesBefore() throws {
        let dir = MigrationTestDirectory()
        defer { dir.remove() }
        let path = dir.path + "/state"
        let prefix = pattern(4096, seed: 7)
        writeFile(path, prefix + [UInt8](repeating: 0xAA, count: 50_000))
        let stream = pattern(10_000, seed: 2)
        let uri = try MigrationURI.parse("file:\(path),offset=4096")
        let out = try OutgoingMigrationChannel(uri)
        try writeInPieces(out, stream)
        try out.finish()
        // The prefix is untouched, the stream follows it, and the old tail is gone.
        #expect(readFile(path) == prefix + stream)
        let incoming = try IncomingMigrationChannel(uri)
        #expect(try readAll(incoming) == stream)
        incoming.close()
    }

    @Test func fileAtOffsetInANewFileLeavesAHole() throws {
        let dir = MigrationTestDirectory()
        defer { dir.remove() }
        let path = dir.path + "/state"
        let out = try OutgoingMigrationChannel(.file(path: path, offset: 16))
        try [UInt8](repeating: 1, count: 4).withUnsafeBytes { try out.write($0) }
        try out.finish()
        #expect(readFile(path) == [UInt8](repeating: 0, count: 16) + [1, 1, 1, 1])
    }

    @Test func fileErrorsNameTheURI() throws {
        let missing = "/nonexistent-cprvmm-dir/x"
        #expect(throws: MigrationChannelError("cannot open file:\(missing): no such file or directory")) {
            try OutgoingMigrationChannel(.file(path: missing, offset: 0))
        }
        #expect(throws: MigrationChannelError("cannot open file:\(missing),offset=8: no such file or directory")) {
            try IncomingMigrationChannel(.file(path: missing, offset: 8))
        }
    }

    @Test func fullDiskIsReportedAsSuch() throws {
        // /dev/full fails every write with ENOSPC.
        guard access("/dev/full", W_OK) == 0 else { return }
        let out = try OutgoingMigrationChannel(.file(path: "/dev/full", offset: 0))
        let big = [UInt8](repeating: 0, count: 1 << 17)
        #expect(throws: MigrationChannelError("no space left on device writing file:/dev/full")) {
            try big.withUnsafeBytes { try out.write($0) }
        }
        // The stream is broken: later calls repeat the error.
        #expect(throws: MigrationChannelError("no space left on device writing file:/dev/full")) { try out.finish() }
    }

    @Test func bufferedErrorSurfacesAtFinish() throws {
        guard access("/dev/full", W_OK) == 0 else { return }
        let out = try OutgoingMigrationChannel(.file(path: "/dev/full", offset: 0))
        try [UInt8](repeating: 0, count: 10).withUnsafeBytes { try out.write($0) }   // buffered
        #expect(throws: MigrationChannelError("no space left on device writing file:/dev/full")) { try out.finish() }
    }

    // MARK: unix:

    @Test func unixRoundTripOfOneMebibyte() throws {
        let dir = MigrationTestDirectory()
        defer { dir.remove() }
        let path = dir.path + "/migrate.sock"
        let uri = MigrationURI.unix(path: path)
        let incoming = try IncomingMigrationChannel(uri)
        defer { incoming.close() }
        #expect(incoming.listeningFD != nil)
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & S_IFMT == S_IFSOCK)
        #expect(info.st_mode & 0o777 == 0o600)

        let stream = pattern(1 << 20, seed: 3)
        let sender = TestThread { () throws -> UInt64 in
            let out = try OutgoingMigrationChannel(uri)
            try writeInPieces(out, stream)
            try out.finish()
            return out.bytesWritten
        }
        try incoming.acceptPeer()
        #expect(incoming.listeningFD == nil)
        #expect(access(path, F_OK) != 0)   // the socket file goes once the peer is in
        #expect(try readAll(incoming) == stream)
        #expect(try sender.join() == 1 << 20)
    }

    @Test func unixConnectToNothing() throws {
        let dir = MigrationTestDirectory()
        defer { dir.remove() }
        let path = dir.path + "/none.sock"
        #expect(throws: MigrationChannelError("cannot connect to unix:\(path): no such file or directory")) {
            try OutgoingMigrationChannel(.unix(path: path))
        }
    }

    @Test func unixListenerReplacesAStaleSocketButNotALiveOne() throws {
        let dir = MigrationTestDirectory()
        defer { dir.remove() }
        let path = dir.path + "/migrate.sock"
        let first = try IncomingMigrationChannel(.unix(path: path))
        #expect(throws: MigrationChannelError("unix:\(path): cannot listen: another process is listening on it")) {
            try IncomingMigrationChannel(.unix(path: path))
        }
        first.close()
        #expect(access(path, F_OK) != 0)   // close removes the socket file
        // A socket file nobody listens on is replaced.
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path.utf8)
            raw[path.utf8.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(stale, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        close(stale)
        let second = try IncomingMigrationChannel(.unix(path: path))
        second.close()
    }

    @Test func peerThatClosesEarlyFailsTheWrite() throws {
        let dir = MigrationTestDirectory()
        defer { dir.remove() }
        let uri = MigrationURI.unix(path: dir.path + "/early.sock")
        let incoming = try IncomingMigrationChannel(uri)
        let out = try OutgoingMigrationChannel(uri)
        try incoming.acceptPeer()
        incoming.close()
        let big = [UInt8](repeating: 0x55, count: 4 << 20)
        #expect(throws: MigrationChannelError("the destination closed the stream (\(uri))")) {
            try big.withUnsafeBytes { try out.write($0) }
        }
        out.cancel()
    }

    @Test func closeWakesAPendingAccept() throws {
        let dir = MigrationTestDirectory()
        defer { dir.remove() }
        let path = dir.path + "/wait.sock"
        let incoming = try IncomingMigrationChannel(.unix(path: path))
        let waiter = TestThread { try incoming.acceptPeer() }
        usleep(50_000)
        incoming.close()
        #expect(throws: MigrationChannelError("waiting for a peer on unix:\(path) was cancelled")) { try waiter.join() }
        #expect(access(path, F_OK) != 0)
        #expect(throws: MigrationChannelError("the migration from unix:\(path) was cancelled")) {
            var byte: UInt8 = 0
            _ = try withUnsafeMutableBytes(of: &byte) { try incoming.read(into: $0) }
        }
    }

    // MARK: tcp:

    @Test func tcpRoundTripOnAKernelChosenPort() throws {
        let incoming = try IncomingMigrationChannel(.tcp(host: "127.0.0.1", port: 0))
        defer { incoming.close() }
        let port = try #require(incoming.boundPort)
        #expect(port != 0)
        #expect(incoming.listeningFD != nil)
        let uri = MigrationURI.tcp(host: "127.0.0.1", port: port)
        let stream = pattern(300_000, seed: 4)
        let sender = TestThread { () throws -> Void in
            let out = try OutgoingMigrationChannel(uri)
            try writeInPieces(out, stream)
            try out.finish()
        }
        // read() accepts the peer itself when acceptPeer() was not called.
        #expect(try readAll(incoming) == stream)
        try sender.join()
    }

    @Test func tcpOverIPv6Loopback() throws {
        let incoming: IncomingMigrationChannel
        do {
            incoming = try IncomingMigrationChannel(.tcp(host: "::1", port: 0))
        } catch {
            return   // no IPv6 on this host
        }
        defer { incoming.close() }
        let uri = MigrationURI.tcp(host: "::1", port: try #require(incoming.boundPort))
        let sender = TestThread { () throws -> Void in
            let out = try OutgoingMigrationChannel(uri)
            try [UInt8]([1, 2, 3]).withUnsafeBytes { try out.write($0) }
            try out.finish()
        }
        #expect(try readAll(incoming) == [1, 2, 3])
        try sender.join()
    }

    @Test func tcpConnectionRefused() throws {
        // A socket bound but not listening holds the port: connecting to it is refused.
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        defer { close(holder) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(holder, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(bound == 0)
        let port = try #require(MigrationSockets.boundPort(holder))
        #expect(throws: MigrationChannelError("cannot connect to tcp:127.0.0.1:\(port): connection refused")) {
            try OutgoingMigrationChannel(.tcp(host: "127.0.0.1", port: port))
        }
    }

    @Test func tcpListenOnAPortInUse() throws {
        let first = try IncomingMigrationChannel(.tcp(host: "127.0.0.1", port: 0))
        defer { first.close() }
        let port = try #require(first.boundPort)
        #expect(throws: MigrationChannelError("cannot listen on tcp:127.0.0.1:\(port): address already in use")) {
            try IncomingMigrationChannel(.tcp(host: "127.0.0.1", port: port))
        }
    }

    // MARK: exec:

    @Test func execRoundTrip() throws {
        let dir = MigrationTestDirectory()
        defer { dir.remove() }
        let path = dir.path + "/exec.state"
        let stream = pattern(500_000, seed: 5)
        let out = try OutgoingMigrationChannel(.exec(command: "cat > '\(path)'"))
        try writeInPieces(out, stream)
        try out.finish()
        #expect(out.childProcessID == nil)   // reaped
        #expect(readFile(path) == stream)

        let incoming = try IncomingMigrationChannel(.exec(command: "cat '\(path)'"))
        #expect(incoming.listeningFD == nil)
        try incoming.acceptPeer()   // nothing to wait for
        #expect(try readAll(incoming) == stream)
        #expect(incoming.childProcessID == nil)
        incoming.close()
    }

    @Test func execExitStatusFailsFinish() throws {
        let out = try OutgoingMigrationChannel(.exec(command: "cat > /dev/null; exit 3"))
        try [UInt8](repeating: 9, count: 1000).withUnsafeBytes { try out.write($0) }
        #expect(throws: MigrationChannelError("exec:cat > /dev/null; exit 3 exited with status 3")) { try out.finish() }
        #expect(out.childProcessID == nil)
    }

    @Test func execThatStopsReadingReportsItsStatus() throws {
        let out = try OutgoingMigrationChannel(.exec(command: "exit 4"))
        let big = [UInt8](repeating: 0, count: 1 << 20)
        #expect(throws: MigrationChannelError("exec:exit 4 exited with status 4")) {
            try big.withUnsafeBytes { try out.write($0) }
        }
        out.cancel()
    }

    @Test func incomingExecExitStatusFailsAtEndOfStream() throws {
        let incoming = try IncomingMigrationChannel(.exec(command: "printf abc; exit 2"))
        var buffer = [UInt8](repeating: 0, count: 16)
        let n = try buffer.withUnsafeMutableBytes { try incoming.read(into: $0) }
        #expect(n == 3)
        #expect(buffer[0..<3] == [0x61, 0x62, 0x63])
        #expect(throws: MigrationChannelError("exec:printf abc; exit 2 exited with status 2")) {
            _ = try buffer.withUnsafeMutableBytes { try incoming.read(into: $0) }
        }
        incoming.close()
    }

    @Test func execChildInheritsNoOtherDescriptors() throws {
        let dir = MigrationTestDirectory()
        defer { dir.remove() }
        let listing = dir.path + "/fds"
        // A descriptor without close-on-exec must still not reach the command.
        let leaky = open("/dev/null", O_RDONLY)
        defer { close(leaky) }
        #expect(leaky > 2)
        let out = try OutgoingMigrationChannel(.exec(command: "cat > /dev/null; ls /proc/$$/fd > '\(listing)'"))
        try out.finish()
        let names = String(decoding: readFile(listing), as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(names.contains("0") && names.contains("1") && names.contains("2"))
        #expect(!names.contains(String(leaky)))
    }

    @Test func cancelStopsABlockedExecAndReapsIt() throws {
        // dash forks for `sleep` rather than exec it: killing only the shell would leave it.
        let marker = "60.\(getpid())\(UInt32.random(in: 1000..<9999))"
        let command = "sleep \(marker)"
        let out = try OutgoingMigrationChannel(.exec(command: command))
        let pid = try #require(out.childProcessID)
        let writer = TestThread { () throws -> Void in
            let big = [UInt8](repeating: 0, count: 4 << 20)   // far more than a pipe holds
            try big.withUnsafeBytes { try out.write($0) }
        }
        usleep(100_000)
        #expect(!liveProcesses(withArgument: marker).isEmpty)
        out.cancel()
        #expect(throws: MigrationChannelError("the migration to exec:\(command) was cancelled")) { try writer.join() }
        // Reaped: not our child any more, and no zombie left.
        var status: Int32 = 0
        #expect(waitpid(pid, &status, WNOHANG) == -1 && errno == ECHILD)
        #expect(access("/proc/\(pid)", F_OK) != 0)
        // The whole command line went, the `sleep` the shell started too.
        var left = liveProcesses(withArgument: marker)
        for _ in 0..<100 where !left.isEmpty {
            usleep(10_000)
            left = liveProcesses(withArgument: marker)
        }
        #expect(left.isEmpty)
        #expect(throws: MigrationChannelError("the migration to exec:\(command) was cancelled")) {
            try [UInt8](repeating: 0, count: 1).withUnsafeBytes { try out.write($0) }
        }
    }

    @Test func cancelOfAnIdleExecReapsIt() throws {
        let incoming = try IncomingMigrationChannel(.exec(command: "sleep 60"))
        let pid = try #require(incoming.childProcessID)
        incoming.close()
        var status: Int32 = 0
        #expect(waitpid(pid, &status, WNOHANG) == -1 && errno == ECHILD)
        #expect(access("/proc/\(pid)", F_OK) != 0)
    }

    @Test func execOfAShellErrorIsAnExitStatus() throws {
        let incoming = try IncomingMigrationChannel(.exec(command: "cat /nonexistent-cprvmm-file 2>/dev/null"))
        #expect(throws: MigrationChannelError("exec:cat /nonexistent-cprvmm-file 2>/dev/null exited with status 1")) {
            try readAll(incoming)
        }
    }

    // MARK: Shared's byte streams

    @Test func channelsCarryAStateStream() throws {
        let dir = MigrationTestDirectory()
        defer { dir.remove() }
        let uri = MigrationURI.file(path: dir.path + "/state", offset: 0)
        let out = try OutgoingMigrationChannel(uri)
        let sink: ByteSink = out
        try [UInt8]([4, 5, 6]).withUnsafeBytes { try sink.write($0) }
        try out.finish()
        let source: ByteSource = try IncomingMigrationChannel(uri)
        var buffer = [UInt8](repeating: 0, count: 8)
        #expect(try buffer.withUnsafeMutableBytes { try source.read(into: $0) } == 3)
        #expect(try buffer.withUnsafeMutableBytes { try source.read(into: $0) } == 0)
    }
}

// MARK: Helpers

/// Bytes that differ from one position to the next, so a lost or repeated chunk shows.
private func pattern(_ count: Int, seed: UInt32) -> [UInt8] {
    var state = seed &* 2_654_435_761 | 1
    return (0..<count).map { _ in
        state ^= state << 13
        state ^= state >> 17
        state ^= state << 5
        return UInt8(truncatingIfNeeded: state)
    }
}

/// Writes `bytes` in pieces of varied sizes: tiny, odd, and bigger than the channel's buffer.
private func writeInPieces(_ channel: OutgoingMigrationChannel, _ bytes: [UInt8]) throws {
    let sizes = [1, 7, 4096, 13, 100_000, 65_536, 3, 70_000]
    var offset = 0
    var index = 0
    try bytes.withUnsafeBytes { raw in
        while offset < raw.count {
            let size = min(sizes[index % sizes.count], raw.count - offset)
            try channel.write(UnsafeRawBufferPointer(rebasing: raw[offset..<offset + size]))
            offset += size
            index += 1
        }
    }
}

/// Reads until the end of the stream, in pieces of varied sizes.
@discardableResult
private func readAll(_ channel: IncomingMigrationChannel) throws -> [UInt8] {
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 200_000)
    let sizes = [5, 65_536, 1, 200_000, 4096]
    var index = 0
    while true {
        let size = sizes[index % sizes.count]
        index += 1
        let n = try buffer.withUnsafeMutableBytes { try channel.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<size])) }
        if n == 0 { return result }
        result.append(contentsOf: buffer[0..<n])
    }
}

/// Processes, not zombies, with `argument` on their command line (an orphan's zombie is its
/// reaper's to clear, not ours).
private func liveProcesses(withArgument argument: String) -> [String] {
    var found: [String] = []
    guard let dir = opendir("/proc") else { return found }
    defer { closedir(dir) }
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard Int(name) != nil else { continue }
        let arguments = readFile("/proc/\(name)/cmdline").split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard arguments.contains(argument) else { continue }
        // "pid (comm) state ..."; comm may hold spaces, so look after its ')'.
        let stat = String(decoding: readFile("/proc/\(name)/stat"), as: UTF8.self)
        guard let close = stat.lastIndex(of: ")") else { continue }
        if stat[stat.index(after: close)...].split(separator: " ").first != "Z" { found.append(name) }
    }
    return found
}

private func writeFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    precondition(fd >= 0)
    bytes.withUnsafeBytes { precondition(write(fd, $0.baseAddress, $0.count) == $0.count) }
    close(fd)
}

private func readFile(_ path: String) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { return result }
        result.append(contentsOf: buffer[0..<n])
    }
}

/// A fresh directory under /tmp, removed with what the tests put in it.
private struct MigrationTestDirectory {
    let path: String

    init() {
        var template = Array("/tmp/cprvmm-migration-XXXXXX".utf8CString)
        precondition(mkdtemp(&template) != nil)
        path = String(cString: template)
    }

    func remove() {
        if let dir = opendir(path) {
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name != "." && name != ".." { unlink(path + "/" + name) }
            }
            closedir(dir)
        }
        rmdir(path)
    }
}

/// A pthread running `body`; `join` waits and returns its result or rethrows its error.
/// (Blocking I/O does not belong on Swift concurrency's few pool threads.)
private final class TestThread<T>: @unchecked Sendable {
    private var thread = pthread_t()
    private var result: Result<T, any Error>?

    init(_ body: @escaping () throws -> T) {
        let start = ThreadStart { [self] in result = Result { try body() } }
        let status = pthread_create(&thread, nil, { raw in
            Unmanaged<ThreadStart>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, Unmanaged.passRetained(start).toOpaque())
        precondition(status == 0)
    }

    func join() throws -> T {
        pthread_join(thread, nil)
        return try result!.get()
    }
}

private final class ThreadStart {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
