import Foundation
import Testing

extension VirtualMachines {
    /// `cprctl console` on a real VM's `-serial unix:` socket, with a pipe as stdin.
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason))
    struct CprctlConsoleTests {
        /// A VM named web1 in a runtime directory of our own, its console at web1/console.sock.
        static func startVM(runtime: String, console: Bool = true) throws -> VMProcess {
            let serial = console ? "unix:\(runtime)/web1/console.sock,server=on,wait=off" : "null"
            let vm = try VMProcess(["-name", "web1", "-m", "32", "-serial", serial, "-qmp", "unix:\(runtime)/web1/qmp.sock,server=on,wait=off"])
            _ = try connectWhenListening(runtime + "/web1/qmp.sock")
            return vm
        }

        @Test("cprctl console NAME prints the guest's ticks, passes input to it, and leaves at Ctrl-] with exit 0")
        func attachTypeLeave() throws {
            let runtime = try CprctlStatusTests.runtimeDirectory()
            defer { try? FileManager.default.removeItem(atPath: runtime) }
            let vm = try Self.startVM(runtime: runtime)
            defer { _ = vm.terminate() }
            let console = try ConsoleProcess(["console", "web1"], runtime: runtime)
            #expect(console.waitForOutput("three tick lines") { VMProcess.ticks(in: $0).count >= 3 })
            console.write("hello console\n")
            #expect(console.waitForOutput("the guest's echo") { $0.contains("echo: hello console") })
            let escaped = Date()
            console.write("\u{1D}")
            let status = console.waitForExit(timeout: 10)
            #expect(status == 0, "stderr: \(console.stderr)")
            #expect(Date().timeIntervalSince(escaped) < 3, "Ctrl-] took \(Date().timeIntervalSince(escaped)) s")
            #expect(console.stderr == "", "a pipe session leaves silently")
            #expect(vm.process.isRunning, "leaving the console stopped the VM")
        }

        @Test("a second console client is turned away with the reason; the VM quitting ends the first with exit 0")
        func secondClientThenQuit() throws {
            let runtime = try CprctlStatusTests.runtimeDirectory()
            defer { try? FileManager.default.removeItem(atPath: runtime) }
            let vm = try Self.startVM(runtime: runtime)
            defer { _ = vm.terminate() }
            let first = try ConsoleProcess(["console", "web1"], runtime: runtime)
            #expect(first.waitForOutput("a tick") { $0.contains("tick ") })
            let second = try CprctlStatusTests.cprctl(["console", "web1"], runtime: runtime)
            #expect(second.status == 1)
            #expect(
                second.output
                    == "cprctl: the console of web1 closed as soon as cprctl connected: cprvmm serves one console client at a time (is another one attached?)\n",
                "\(second.output)")
            #expect(first.isRunning, "the first client lost its console to the second")

            #expect(vm.terminate() == 0)
            #expect(first.waitForExit(timeout: 10) == 0)
            #expect(first.stderr == "cprctl: the console of web1 closed\n", "\(first.stderr)")
        }

        @Test("a VM without a console socket: one line naming the path and the -serial option it needs")
        func noConsoleSocket() throws {
            let runtime = try CprctlStatusTests.runtimeDirectory()
            defer { try? FileManager.default.removeItem(atPath: runtime) }
            let vm = try Self.startVM(runtime: runtime, console: false)
            defer { _ = vm.terminate() }
            let path = "\(runtime)/web1/console.sock"
            // No NAME: the only VM of the runtime directory.
            let result = try CprctlStatusTests.cprctl(["console"], runtime: runtime)
            #expect(result.status == 1)
            #expect(
                result.output == "cprctl: no console socket at \(path): the VM must run with -serial unix:\(path),server=on,wait=off (is it running?)\n",
                "\(result.output)")
        }
    }
}

/// `cprctl console` on a pseudo-terminal, against a console socket the test serves itself
/// (no VM needed): raw mode while attached, the terminal as it was after every way out.
@Suite struct CprctlConsoleTerminalTests {
    @Test("on a terminal: raw mode while attached, restored after Ctrl-] (exit 0)")
    func escapeRestoresTheTerminal() throws {
        let terminal = try PseudoTerminal()
        let server = try ConsoleSocketServer()
        let before = try terminal.attributes()
        let console = try ConsoleProcess(["console", "--socket", server.path], runtime: "/nonexistent", stdin: terminal.replica)
        #expect(console.waitForError("the connected line") { $0 == "cprctl: connected to the console at \(server.path) (Ctrl-] to leave)\n" })
        #expect(terminal.waitUntil("raw mode") { $0.c_lflag & tcflag_t(ICANON | ECHO | ISIG) == 0 })
        // Attached and idle, cprctl sleeps in poll(2) rather than spinning.
        let cpuBefore = try cpuTicks(of: console.process.processIdentifier)
        usleep(1_000_000)
        let cpuUsed = try cpuTicks(of: console.process.processIdentifier) - cpuBefore
        #expect(cpuUsed < 20, "an idle console used \(cpuUsed) clock ticks of CPU in one second")
        terminal.type("\u{1D}")
        #expect(console.waitForExit(timeout: 10) == 0)
        #expect(try terminal.attributes() == before, "the terminal was left changed")
    }

    @Test("on a terminal: SIGTERM restores the terminal before cprctl dies of it")
    func signalRestoresTheTerminal() throws {
        let terminal = try PseudoTerminal()
        let server = try ConsoleSocketServer()
        let before = try terminal.attributes()
        let console = try ConsoleProcess(["console", "--socket", server.path], runtime: "/nonexistent", stdin: terminal.replica)
        #expect(terminal.waitUntil("raw mode") { $0.c_lflag & tcflag_t(ICANON) == 0 })
        console.process.terminate()
        #expect(console.waitForExit(timeout: 10) == SIGTERM, "cprctl did not die of SIGTERM")
        #expect(console.process.terminationReason == .uncaughtSignal)
        #expect(try terminal.attributes() == before, "SIGTERM left the terminal raw")
    }
}

/// User plus system CPU time of a process so far, in clock ticks (1/100 s).
func cpuTicks(of pid: Int32) throws -> Int {
    let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
    // Fields after the command name, which is in parentheses and may hold spaces.
    guard let close = stat.lastIndex(of: ")") else { throw POSIXError(.EINVAL) }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { throw POSIXError(.EINVAL) }
    return user + system
}

/// A running `cprctl` with stdout and stderr collected in the background and stdin a pipe
/// (or the given file descriptor, such as a terminal).
final class ConsoleProcess: @unchecked Sendable {
    let process = Process()
    private let input = Pipe()
    private let outputPipe = Pipe()
    private let errorPipe = Pipe()
    private let lock = NSLock()
    private var out = Data()
    private var err = Data()

    init(_ arguments: [String], runtime: String, stdin: Int32? = nil) throws {
        process.executableURL = Binaries.directory.appendingPathComponent("cprctl")
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(["CPRVMM_RUNTIME_DIR": runtime]) { $1 }
        process.standardInput = stdin.map { FileHandle(fileDescriptor: $0, closeOnDealloc: false) } ?? input
        process.standardOutput = outputPipe
        process.standardError = errorPipe
        outputPipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let chunk = handle.availableData
            guard let self else { return }
            self.lock.lock(); self.out.append(chunk); self.lock.unlock()
        }
        errorPipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let chunk = handle.availableData
            guard let self else { return }
            self.lock.lock(); self.err.append(chunk); self.lock.unlock()
        }
        try process.run()
    }

    deinit {
        // SIGKILL: a cprctl that ignores SIGTERM is what some tests look for.
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    var isRunning: Bool { process.isRunning }
    var stdout: String { lock.lock(); defer { lock.unlock() }; return String(decoding: out, as: UTF8.self) }
    var stderr: String { lock.lock(); defer { lock.unlock() }; return String(decoding: err, as: UTF8.self) }

    func write(_ text: String) { input.fileHandleForWriting.write(Data(text.utf8)) }

    func waitForOutput(timeout: Double = 30, _ what: String, _ predicate: (String) -> Bool) -> Bool {
        wait(timeout: timeout, what) { predicate(stdout) }
    }

    func waitForError(timeout: Double = 30, _ what: String, _ predicate: (String) -> Bool) -> Bool {
        wait(timeout: timeout, what) { predicate(stderr) }
    }

    private func wait(timeout: Double, _ what: String, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        Issue.record("timed out after \(timeout) s waiting for \(what); stdout tail: \(stdout.suffix(300)); stderr: \(stderr.suffix(300))")
        return false
    }

    /// The exit status once cprctl ended by itself, nil if it did not within `timeout`.
    func waitForExit(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        guard !process.isRunning else { return nil }
        process.waitUntilExit()
        usleep(50_000)  // let the readers drain the pipes
        return process.terminationStatus
    }
}

/// A pseudo-terminal pair: the test types on the primary side, cprctl reads the replica.
final class PseudoTerminal {
    let primary: Int32
    let replica: Int32

    init() throws {
        // openpty is in glibc's libc since 2.34, but Swift's Glibc module does not declare it.
        typealias OpenPTY = @convention(c) (
            UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>, UnsafeMutablePointer<CChar>?, UnsafeRawPointer?, UnsafeRawPointer?
        ) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "openpty") else { throw POSIXError(.ENOSYS) }
        var primary: Int32 = -1
        var replica: Int32 = -1
        guard unsafeBitCast(symbol, to: OpenPTY.self)(&primary, &replica, nil, nil, nil) == 0 else { throw POSIXError(.ENXIO) }
        self.primary = primary
        self.replica = replica
    }

    deinit {
        close(primary)
        close(replica)
    }

    func attributes() throws -> TerminalAttributes {
        var attributes = termios()
        guard tcgetattr(replica, &attributes) == 0 else { throw POSIXError(.ENOTTY) }
        return TerminalAttributes(attributes)
    }

    func waitUntil(_ what: String, timeout: Double = 10, _ condition: (termios) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            var attributes = termios()
            if tcgetattr(replica, &attributes) == 0, condition(attributes) { return true }
            usleep(20_000)
        }
        Issue.record("the terminal never reached \(what)")
        return false
    }

    func type(_ text: String) {
        _ = text.withCString { Glibc.write(primary, $0, strlen($0)) }
    }
}

/// The settings of a terminal that `cprctl console` changes and must put back.
struct TerminalAttributes: Equatable, CustomStringConvertible {
    let input, output, control, local: tcflag_t

    init(_ attributes: termios) {
        input = attributes.c_iflag
        output = attributes.c_oflag
        control = attributes.c_cflag
        local = attributes.c_lflag
    }

    var description: String { "iflag \(input) oflag \(output) cflag \(control) lflag \(local)" }
}

/// A console socket that accepts clients and keeps them, saying nothing: enough for cprctl
/// to attach.
final class ConsoleSocketServer {
    let path = temporarySocketPath("console")
    private let listener: Int32

    init() throws {
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path.utf8)
            raw[path.utf8.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        // Connections wait in the backlog, never accepted: connect succeeds all the same.
        guard bound == 0, listen(listener, 4) == 0 else { throw POSIXError(.EADDRINUSE) }
    }

    deinit {
        close(listener)
        unlink(path)
    }
}
