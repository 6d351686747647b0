import CLinux
import Glibc

/// Where the UART's bytes go and come from (QEMU's chardev for -serial).
/// Output is written from vCPU threads under the SerialPort lock; input is read on the loop thread.
final class SerialBackend {
    private let config: SerialConfig
    private var outputFD: Int32 = -1
    private var ownsOutput = false
    private var listenFD: Int32 = -1
    /// The connected console client; set on the loop thread, used by vCPU threads in send().
    private var clientFD: Int32 = -1
    private let clientLock = Lock()
    private var pausedInputFD: Int32 = -1
    private var savedTerminal: termios?
    private var socketPath: String?
    private let outputErrors = RateLimiter(burst: 1, intervalSeconds: 10)

    /// `inherited`: fds a previous image handed over in a live update, by handover name: the
    /// console file keeps its position (no truncation), the socket keeps its connected client.
    init(_ config: SerialConfig, inherited: (String) -> Int32? = { _ in nil }) throws {
        self.config = config
        switch config {
        case .none, .null:
            break
        case .stdio:
            outputFD = 1
        case .file(let path):
            if let fd = inherited(SerialBackend.fileHandoverName) {
                outputFD = SerialBackend.takeBack(fd)
            } else {
                outputFD = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                guard outputFD >= 0 else { throw ConfigurationError("-serial file:\(path): \(SystemError.describe(errno))") }
            }
            ownsOutput = true
        case .unixServer(let path):
            if let fd = inherited(SerialBackend.listenHandoverName) {
                listenFD = SerialBackend.takeBack(fd)
                clientFD = inherited(SerialBackend.clientHandoverName).map(SerialBackend.takeBack) ?? -1
            } else {
                listenFD = try UnixListener.listen(path: path, context: "-serial unix:\(path)")
            }
            socketPath = path
        }
    }

    static let fileHandoverName = "serial-file"
    static let listenHandoverName = "serial-listen"
    static let clientHandoverName = "serial-client"

    /// An inherited fd becomes ours again: close-on-exec and non-blocking, as if we had opened it.
    private static func takeBack(_ fd: Int32) -> Int32 {
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return fd
    }

    /// The fds the next image needs to carry on the console without a break.
    var handover: [(name: String, fd: Int32)] {
        var result: [(String, Int32)] = []
        if ownsOutput { result.append((SerialBackend.fileHandoverName, outputFD)) }
        if listenFD >= 0 { result.append((SerialBackend.listenHandoverName, listenFD)) }
        clientLock.withLock { if clientFD >= 0 { result.append((SerialBackend.clientHandoverName, clientFD)) } }
        return result
    }

    deinit {
        restoreTerminal()
        if ownsOutput { close(outputFD) }
        if clientFD >= 0 { close(clientFD) }
        if listenFD >= 0 { close(listenFD) }
        if let socketPath { unlink(socketPath) }
    }

    /// Sends guest output. A slow or absent socket client loses bytes rather than stalling the
    /// vCPU (as QEMU does with wait=off); files and stdio get everything.
    func send(_ bytes: UnsafeRawBufferPointer) {
        if listenFD >= 0 {
            // Errors are ignored here: the loop thread sees the hang-up and drops the client.
            clientLock.withLock {
                if clientFD >= 0 { _ = Glibc.send(clientFD, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            }
            return
        }
        guard outputFD >= 0 else { return }
        do {
            try writeAll(outputFD, bytes)
        } catch {
            outputErrors.log("serial output: \(error)")
        }
    }

    /// Registers the input side with the loop; `deliver` gets each chunk read.
    func attach(to loop: EventLoop, deliver: @escaping (UnsafeRawBufferPointer) -> Bool) throws {
        switch config {
        case .stdio:
            makeTerminalRaw()
            try watchInput(0, loop: loop, deliver: deliver)
        case .unixServer:
            if clientFD >= 0 { try watchInput(clientFD, loop: loop, deliver: deliver) }
            try loop.add(listenFD, events: CLINUX_EPOLLIN) { [unowned self] _ in
                let fd = clinux_accept4(listenFD, Int32(SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue))
                guard fd >= 0 else { return }
                // One console client at a time, like QEMU's socket chardev.
                guard clientFD < 0 else { close(fd); return }
                clientLock.withLock { clientFD = fd }
                try? watchInput(fd, loop: loop, deliver: deliver)
            }
        default:
            break
        }
    }

    private func watchInput(_ fd: Int32, loop: EventLoop, deliver: @escaping (UnsafeRawBufferPointer) -> Bool) throws {
        // epoll refuses regular files and /dev/null (EPERM): such a stdin has no input to wait for.
        var info = stat()
        if fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG || (info.st_mode & S_IFMT) == S_IFCHR && isatty(fd) == 0 {
            return
        }
        try loop.add(fd, events: CLINUX_EPOLLIN) { [unowned self, unowned loop] _ in
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            guard n > 0 else {
                // EOF or error: stop watching (stdin at EOF stays quiet; a socket client is gone).
                loop.remove(fd)
                if fd == clientFD { dropClient() }
                return
            }
            let keepReading = buffer.withUnsafeBytes { deliver(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
            if !keepReading {
                // The guest is not reading: stop reading too, so the writer feels back-pressure.
                loop.modify(fd, events: 0)
                pausedInputFD = fd
            }
        }
    }

    /// Re-arms input paused by back-pressure; call on the loop thread.
    func resumeInput(loop: EventLoop) {
        guard pausedInputFD >= 0 else { return }
        loop.modify(pausedInputFD, events: CLINUX_EPOLLIN)
        pausedInputFD = -1
    }

    private func dropClient() {
        guard clientFD >= 0 else { return }
        if pausedInputFD == clientFD { pausedInputFD = -1 }
        clientLock.withLock {
            close(clientFD)
            clientFD = -1
        }
    }

    /// Raw input so the guest sees every key, but keep ISIG so Ctrl-C still stops cprvmm
    /// (QEMU's `-serial stdio` default, signal=on).
    private func makeTerminalRaw() {
        guard isatty(0) != 0 else { return }
        var attributes = termios()
        guard tcgetattr(0, &attributes) == 0 else { return }
        // After a live update the terminal is already raw: restore what the first image found.
        savedTerminal = SerialBackend.terminalFromEnvironment() ?? attributes
        cfmakeraw(&attributes)
        attributes.c_lflag |= tcflag_t(ISIG)
        attributes.c_oflag |= tcflag_t(OPOST | ONLCR)
        tcsetattr(0, TCSANOW, &attributes)
    }

    /// The terminal settings to restore at exit travel to the next image of a live update in
    /// this environment variable (hex bytes of a `termios`).
    static let savedTerminalVariable = "CPRVMM_SAVED_TERMIOS"

    /// For the exec of a live update: the settings the first image found, if it changed them.
    var savedTerminalForHandover: String? {
        guard var saved = savedTerminal else { return nil }
        return withUnsafeBytes(of: &saved) { bytes in
            bytes.map { String($0 >> 4, radix: 16) + String($0 & 0xF, radix: 16) }.joined()
        }
    }

    private static func terminalFromEnvironment() -> termios? {
        guard let text = getenv(savedTerminalVariable).map({ String(cString: $0) }) else { return nil }
        let digits = Array(text.utf8)
        var result = termios()
        guard digits.count == 2 * MemoryLayout<termios>.size else { return nil }
        let parsed: Bool = withUnsafeMutableBytes(of: &result) { bytes in
            for index in bytes.indices {
                guard let high = hexValue(digits[2 * index]), let low = hexValue(digits[2 * index + 1]) else { return false }
                bytes[index] = high << 4 | low
            }
            return true
        }
        return parsed ? result : nil
    }

    private static func hexValue(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return digit - UInt8(ascii: "a") + 10
        default: return nil
        }
    }

    func restoreTerminal() {
        guard var saved = savedTerminal else { return }
        tcsetattr(0, TCSANOW, &saved)
        savedTerminal = nil
    }
}
