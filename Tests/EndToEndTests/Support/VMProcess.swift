import Foundation
import Testing

/// Where the built binaries are: $CPRVMM_BIN_DIR, else this package's .build/debug.
enum Binaries {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    static var directory: URL {
        if let dir = ProcessInfo.processInfo.environment["CPRVMM_BIN_DIR"] { return URL(fileURLWithPath: dir) }
        return packageRoot.appendingPathComponent(".build/debug")
    }

    static var cprvmm: String { directory.appendingPathComponent("cprvmm").path }
}

/// Whether this machine can run VMs; KVM tests are skipped with this as the printed reason.
enum Host {
    static let kvmAvailable: Bool = {
        let fd = open("/dev/kvm", O_RDWR)
        if fd >= 0 { close(fd) }
        return fd >= 0
    }()
    static let noKVMReason: Comment = "needs /dev/kvm (readable and writable by this user); skipped"

    /// QEMU's PC firmware from Debian's seabios package (scripts/test installs it as root).
    static let seabios = "/usr/share/seabios/bios.bin"
    static let seabiosAvailable = kvmAvailable && access(seabios, R_OK) == 0

    /// Whether files next to `path` can be opened O_DIRECT (tmpfs cannot: cache=none fails there).
    static func supportsDirectIO(at path: String) -> Bool {
        let fd = open(path, O_RDONLY | 0o40000 /* O_DIRECT */)
        if fd >= 0 { close(fd) }
        return fd >= 0
    }
    static let noSeabiosReason: Comment = "needs /dev/kvm and \(seabios) (apt-get install seabios); skipped"
}

/// A cprvmm process driven the way an operator would: arguments in, serial console and log
/// out, signals to stop it. Output is collected by background readers so the VM never blocks.
final class VMProcess: @unchecked Sendable {
    let process = Process()
    private let stdoutPipe = Pipe()
    private let stderrPipe = Pipe()
    let stdinPipe = Pipe()
    private let lock = NSLock()
    private var out = Data()
    private var err = Data()

    init(_ arguments: [String], binary: String = Binaries.cprvmm, environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
        process.standardInput = stdinPipe
        stdoutPipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let chunk = handle.availableData
            guard let self, !chunk.isEmpty else { return }
            self.lock.lock(); self.out.append(chunk); self.lock.unlock()
        }
        stderrPipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let chunk = handle.availableData
            guard let self, !chunk.isEmpty else { return }
            self.lock.lock(); self.err.append(chunk); self.lock.unlock()
        }
        try process.run()
    }

    deinit {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    var pid: Int32 { process.processIdentifier }
    var stdout: String { lock.lock(); defer { lock.unlock() }; return String(decoding: out, as: UTF8.self) }
    var stderr: String { lock.lock(); defer { lock.unlock() }; return String(decoding: err, as: UTF8.self) }
    var stdoutLines: [String] { stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) }

    /// Waits until `predicate` holds for stdout (generous timeouts: CI machines are loaded).
    @discardableResult
    func waitForOutput(timeout: Double = 30, _ what: String, _ predicate: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if predicate(stdout) { return true }
            if !process.isRunning { return predicate(stdout) }
            usleep(20_000)
        }
        Issue.record("timed out after \(timeout) s waiting for \(what); stdout tail: \(stdout.suffix(400)); stderr: \(stderr.suffix(800))")
        return false
    }

    @discardableResult
    func waitForLine(containing text: String, timeout: Double = 30) -> Bool {
        waitForOutput(timeout: timeout, "a line containing '\(text)'") { $0.contains(text) }
    }

    /// The highest "tick N" printed so far.
    var lastTick: Int { VMProcess.ticks(in: stdout).last ?? 0 }

    /// The N of every complete "tick N" line. The last line counts only once its newline
    /// arrived: a running guest may be in the middle of printing it.
    static func ticks(in text: String) -> [Int] {
        text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().compactMap { line -> Int? in
            guard line.hasPrefix("tick ") else { return nil }
            return Int(line.dropFirst(5).prefix { $0.isNumber })
        }
    }

    /// Where a tick sequence first fails to count up by one (nil: unbroken). Failure messages
    /// show this pair rather than thousands of ticks.
    static func firstBreak(in ticks: [Int]) -> (Int, Int)? {
        zip(ticks, ticks.dropFirst()).first { $1 != $0 + 1 }
    }

    /// Waits for the process to end by itself; returns its exit status.
    func waitForExit(timeout: Double = 30) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        guard !process.isRunning else {
            Issue.record("cprvmm did not exit within \(timeout) s; stderr: \(stderr.suffix(800))")
            return nil
        }
        process.waitUntilExit()
        usleep(50_000)  // let the readers drain the pipes
        return process.terminationStatus
    }

    /// SIGTERM, as systemd or an operator would stop it; returns the exit status.
    func terminate(timeout: Double = 30) -> Int32? {
        process.terminate()
        return waitForExit(timeout: timeout)
    }

    func sendInput(_ text: String) {
        stdinPipe.fileHandleForWriting.write(Data(text.utf8))
    }
}

/// Runs cprvmm to completion (for option errors and short-lived guests).
func runCprvmm(_ arguments: [String], timeout: Double = 30) throws -> (status: Int32?, stdout: String, stderr: String) {
    let vm = try VMProcess(arguments)
    let status = vm.waitForExit(timeout: timeout)
    return (status, vm.stdout, vm.stderr)
}
