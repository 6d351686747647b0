import CLinux
import Glibc
import Shared

/// The way out when the binary at the unit's ExecStart= cannot take a stored state: after a
/// package upgrade, the new binary crashes while it loads the state of a live update, systemd
/// restarts the service with the fd store -- and runs the same new binary again, which
/// crashes again, until StartLimitBurst= gives up and the guest is lost.
///
/// So every image that starts loading a saved state first writes who it is into a small
/// record kept in the fd store ("load-attempts": one line per attempt, the executable's
/// device, inode, version and build id). An image restarted from the fd store that finds
/// itself in that record has already died on this very state: if `CPRVMM_RECOVERY_FALLBACK`
/// names another binary that has not tried yet (the Debian package keeps the one it replaced
/// as /usr/lib/cprvmm/cprvmm.previous), this image execs it, same PID, with the stored fds
/// passed on exactly as systemd passed them. The record leaves the store with the rest of
/// the update's state once a guest resumes.
enum RecoveryFallback {
    static let environmentVariable = "CPRVMM_RECOVERY_FALLBACK"
    /// The record's name in the fd store (one of `Machine.storedUpdateNames`).
    static let storedName = "load-attempts"
    /// The attempts before this image's, for the record of the recovery.
    nonisolated(unsafe) private(set) static var earlierAttempts: [Attempt] = []

    /// One attempt: which file tried (device and inode, so a copy of the same build counts as
    /// another binary) and what it was.
    struct Attempt: Equatable {
        var device: UInt64
        var inode: UInt64
        var version: String
        var buildID: String

        var line: String { "\(device):\(inode) \(version) \(buildID)" }

        init(device: UInt64, inode: UInt64, version: String, buildID: String) {
            self.device = device
            self.inode = inode
            self.version = version
            self.buildID = buildID
        }

        init?(line: Substring) {
            let fields = line.split(separator: " ")
            guard fields.count == 3 else { return nil }
            let file = fields[0].split(separator: ":")
            guard file.count == 2, let device = UInt64(file[0]), let inode = UInt64(file[1]) else { return nil }
            self.init(device: device, inode: inode, version: String(fields[1]), buildID: String(fields[2]))
        }

        func isFile(_ info: stat) -> Bool { UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode }
    }

    /// The attempts a record holds (unreadable lines are skipped: the record only guides).
    static func attempts(in text: String) -> [Attempt] {
        text.split(separator: "\n").compactMap { Attempt(line: $0) }
    }

    /// This image's own attempt; nil if /proc/self/exe cannot be read (then no record).
    static var ownAttempt: Attempt? {
        var info = stat()
        guard stat("/proc/self/exe", &info) == 0 else { return nil }
        return Attempt(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), version: BuildInfo.version, buildID: BuildInfo.buildID)
    }

    /// What to do with a stored state, given the attempts before this one: go on (nil) or
    /// exec the fallback at the returned path. Pure, for the tests.
    static func decide(earlier: [Attempt], own: Attempt, fallbackPath: String?, fallback: stat?) -> String? {
        guard let fallbackPath, let fallback else { return nil }
        guard earlier.contains(own) else { return nil }            // first try of this binary
        guard !own.isFile(fallback) else { return nil }            // the fallback is this very file
        guard !earlier.contains(where: { $0.isFile(fallback) }) else { return nil }  // it failed too
        return fallbackPath
    }

    /// Called first thing with what systemd passed back. If this binary already died on the
    /// stored state and a fallback binary has not tried it yet, execs that binary (returns only
    /// if the exec failed). Otherwise records this attempt and returns.
    static func checkStored(_ stored: [CPRState.InheritedFD], arguments: [String]) {
        guard stored.contains(where: { $0.name == Machine.storedStateName }), let own = ownAttempt else { return }
        let storedRecord = stored.first { $0.name == storedName }?.fd
        let earlier = storedRecord.map { attempts(in: readAll($0)) } ?? []
        let fallbackPath = getenv(environmentVariable).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        var fallback = stat()
        let fallbackExists = fallbackPath.map { stat($0, &fallback) == 0 && access($0, X_OK) == 0 } ?? false
        earlierAttempts = earlier
        if !earlier.isEmpty {
            let who = earlier.map { "\($0.version) (build id \($0.buildID.prefix(12)))" }.joined(separator: ", ")
            Log.warning("the stored VM state was already being loaded by: \(who); that process died")
        }
        if let path = decide(earlier: earlier, own: own, fallbackPath: fallbackPath, fallback: fallbackExists ? fallback : nil) {
            Log.error("this binary (\(Machine.executablePath), version \(BuildInfo.version)) already died loading the stored VM state; falling back to \(path) (\(environmentVariable)) to resume the guest")
            let failure = execFallback(path, stored: stored, arguments: arguments)
            Log.error("the fallback failed: \(failure); trying again with this binary")
        } else if earlier.contains(own) {
            let why = fallbackPath == nil ? "\(environmentVariable) is not set" :
                !fallbackExists ? "the fallback \(fallbackPath!) is missing or not executable" : "the fallback \(fallbackPath!) already died on it too"
            Log.error("this binary already died loading the stored VM state and \(why); trying again")
        }
        record(own, in: storedRecord)
    }

    /// Appends this attempt to the stored record, or starts a record in the fd store. Before
    /// the load: a crash in the load must find the attempt recorded.
    static func record(_ own: Attempt, in storedRecord: Int32?) {
        guard Worker.serviceManager != nil else { return }
        if let fd = storedRecord {
            append(own.line + "\n", to: fd)
            return
        }
        let fd = clinux_memfd_create("cprvmm-load-attempts", CLINUX_MFD_CLOEXEC)
        guard fd >= 0 else { return }
        append(own.line + "\n", to: fd)
        // The store holds its own reference: this fd can go once systemd has it.
        Worker.notifyService(.storeFD(name: storedName, fd: fd))
        close(fd)
    }

    /// Records the attempt of an image that got its state by exec (a live update), so that the
    /// restart after a crash in this image's load knows who died.
    static func recordExecArrival() {
        guard Worker.serviceManager != nil, let own = ownAttempt else { return }
        record(own, in: nil)
    }

    /// Execs `path` as systemd would have started it: the same command line, the stored fds at
    /// the numbers systemd gave them, and LISTEN_* set again for this PID. argv[0] stays the
    /// unit's program, so the next live update looks up the unit's binary, not the fallback.
    private static func execFallback(_ path: String, stored: [CPRState.InheritedFD], arguments: [String]) -> String {
        let file = open(path, O_RDONLY | O_CLOEXEC)
        guard file >= 0 else { return "cannot open \(path): \(String(cString: strerror(errno)))" }
        defer { close(file) }
        let names = stored.map(\.name).joined(separator: ":")
        let program = CommandLine.arguments.first ?? path
        return Worker.execImage(ExecRequest(
            arguments: [program] + arguments, keepFDs: stored.map(\.fd),
            environment: [("LISTEN_FDS", String(stored.count)), ("LISTEN_PID", String(getpid())), ("LISTEN_FDNAMES", names)],
            executableFD: file))
    }

    private static func readAll(_ fd: Int32) -> String {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var offset: off_t = 0
        while bytes.count < 1 << 20 {
            let n = pread(fd, &buffer, buffer.count, offset)
            guard n > 0 else { break }
            bytes += buffer[..<n]
            offset += off_t(n)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func append(_ text: String, to fd: Int32) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return }
        var bytes = Array(text.utf8)
        _ = pwrite(fd, &bytes, bytes.count, info.st_size)
    }
}
