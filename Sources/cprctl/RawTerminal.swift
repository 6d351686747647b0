import Glibc

/// The terminal on standard input, switched to raw mode for `cprctl console` so every key
/// (Ctrl-C included) reaches the guest, and put back however cprctl ends: `restore()` on
/// every return path, and a handler for the signals that would otherwise end cprctl with the
/// terminal left raw (SIGINT and SIGQUIT cannot come from the keyboard in raw mode, but
/// `kill` can send them; SIGHUP when the terminal goes away).
final class RawTerminal {
    static let restoringSignals = [SIGHUP, SIGINT, SIGQUIT, SIGTERM]

    let fd: Int32
    private var restored = false

    /// Raw mode on `fd`, or nil when it is not a terminal (or refuses the change).
    init?(fd: Int32) {
        guard isatty(fd) != 0 else { return nil }
        var attributes = termios()
        guard tcgetattr(fd, &attributes) == 0 else { return nil }
        self.fd = fd
        RawTerminal.saved.pointee = attributes
        RawTerminal.savedFD.pointee = fd
        for signal in RawTerminal.restoringSignals { RawTerminal.install(signal) }
        // A parent may hand down a mask that blocks them (a test runner's threads do): they
        // would stay pending, and `kill` could not end cprctl at all.
        var unblocked = sigset_t()
        sigemptyset(&unblocked)
        for signal in RawTerminal.restoringSignals { sigaddset(&unblocked, signal) }
        pthread_sigmask(SIG_UNBLOCK, &unblocked, nil)
        cfmakeraw(&attributes)
        // Guests often end lines with a bare \n: keep the terminal's \n -> \r\n on output,
        // as cprvmm does for -serial stdio, so lines do not staircase.
        attributes.c_oflag |= tcflag_t(OPOST | ONLCR)
        guard tcsetattr(fd, TCSANOW, &attributes) == 0 else {
            restoreSignalDefaults()
            return nil
        }
    }

    deinit { restore() }

    func restore() {
        guard !restored else { return }
        restored = true
        tcsetattr(fd, TCSANOW, RawTerminal.saved)
        restoreSignalDefaults()
    }

    private func restoreSignalDefaults() {
        for signal in RawTerminal.restoringSignals { Glibc.signal(signal, SIG_DFL) }
    }

    // Read by the signal handler. Both are set before the handler is installed, so there
    // the handler finds them initialised and only reads memory: no lazy initialisation,
    // which would not be async-signal-safe.
    private static let saved: UnsafeMutablePointer<termios> = {
        let pointer = UnsafeMutablePointer<termios>.allocate(capacity: 1)
        pointer.initialize(to: termios())
        return pointer
    }()

    private static let savedFD: UnsafeMutablePointer<Int32> = {
        let pointer = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        pointer.initialize(to: -1)
        return pointer
    }()

    private static func install(_ signal: Int32) {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { signal in
            // tcsetattr, signal and raise are async-signal-safe. Then die of the signal as if
            // it had not been caught, so the parent sees the real cause.
            tcsetattr(RawTerminal.savedFD.pointee, TCSANOW, RawTerminal.saved)
            Glibc.signal(signal, SIG_DFL)
            raise(signal)
        }
        sigemptyset(&action.sa_mask)
        sigaction(signal, &action, nil)
    }
}
