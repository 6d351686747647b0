import CSystemd
import Glibc
import Shared
import Worker

/// The VMM's side of the sd_notify protocol, through libsystemd (loaded on first use, see
/// csystemd.h). Installed as `Worker.serviceManager` when NOTIFY_SOCKET is set. NOTIFY_SOCKET,
/// WATCHDOG_USEC and WATCHDOG_PID stay in the environment, so every later image of this
/// process (same PID) talks to systemd the same way.
public final class SystemdNotifier: ServiceManager {
    /// An error reporter for failed sends (the Supervisor logs them; tests collect them).
    private let report: (String) -> Void
    /// A missing libsystemd is reported once (a race could report it twice: harmless).
    private var reportedLoadFailure = false

    public init(report: @escaping (String) -> Void) {
        self.report = report
    }

    /// A notifier when this process runs under a service manager, else nil.
    public static func fromEnvironment(report: @escaping (String) -> Void) -> SystemdNotifier? {
        guard let socket = getenv("NOTIFY_SOCKET"), socket.pointee != 0 else { return nil }
        return SystemdNotifier(report: report)
    }

    public func notify(_ notifications: [ServiceNotification]) {
        for message in Self.messages(for: notifications, monotonicMicroseconds: ProcessClock.monotonicNanoseconds() / 1000) {
            send(message.text, fds: message.fds)
        }
    }

    public var watchdogMicroseconds: UInt64? {
        // Only read when systemd set one: no library load for units without WatchdogSec=.
        guard getenv("WATCHDOG_USEC") != nil else { return nil }
        var microseconds: UInt64 = 0
        let result = csd_watchdog_enabled(0, &microseconds)
        if result == -ENOSYS { reportLoadFailure(); return nil }
        return result > 0 && microseconds > 0 ? microseconds : nil
    }

    public func takeStoredFDs() -> [CPRState.InheritedFD] {
        ListenFDs.take()
    }

    // MARK: Messages

    public struct Message: Equatable {
        public var text: String
        public var fds: [Int32]
    }

    /// The datagrams for `notifications`: fd-less assignments share one message (systemd
    /// applies them together, READY=1 with its STATUS=), each fd travels in its own, since
    /// FDNAME= names every fd of a message.
    public static func messages(for notifications: [ServiceNotification], monotonicMicroseconds: UInt64) -> [Message] {
        var shared: [String] = []
        var separate: [Message] = []
        for notification in notifications {
            switch notification {
            case .ready(let status):
                shared += ["READY=1", "STATUS=" + oneLine(status)]
            case .reloading(let status):
                // MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match the reload to
                // this message; older managers ignore it.
                shared += ["RELOADING=1", "MONOTONIC_USEC=\(monotonicMicroseconds)", "STATUS=" + oneLine(status)]
            case .status(let status):
                shared.append("STATUS=" + oneLine(status))
            case .stopping(let status):
                shared += ["STOPPING=1", "STATUS=" + oneLine(status)]
            case .extendTimeout(let microseconds):
                shared.append("EXTEND_TIMEOUT_USEC=\(microseconds)")
            case .watchdog:
                shared.append("WATCHDOG=1")
            case .storeFD(let name, let fd):
                separate.append(Message(text: "FDSTORE=1\nFDNAME=\(fdName(name))", fds: [fd]))
            case .removeStoredFD(let name):
                separate.append(Message(text: "FDSTOREREMOVE=1\nFDNAME=\(fdName(name))", fds: []))
            }
        }
        return (shared.isEmpty ? [] : [Message(text: shared.joined(separator: "\n"), fds: [])]) + separate
    }

    /// STATUS= ends at a newline: keep the text on one line.
    static func oneLine(_ text: String) -> String {
        String(text.map { $0 == "\n" || $0 == "\r" ? " " : $0 })
    }

    /// systemd accepts FDNAME= of at most 255 printable ASCII characters without ':'.
    static func fdName(_ name: String) -> String {
        let allowed = name.unicodeScalars.map { scalar -> Character in
            scalar.isASCII && scalar.value > 0x20 && scalar.value < 0x7F && scalar != ":" ? Character(scalar) : "_"
        }
        return String(String(allowed).prefix(255))
    }

    private func send(_ text: String, fds: [Int32]) {
        let result = fds.withUnsafeBufferPointer { buffer in
            csd_pid_notify_with_fds(0, 0, text, buffer.baseAddress, UInt32(buffer.count))
        }
        if result == -ENOSYS {
            reportLoadFailure()
        } else if result < 0 {
            report("sd_notify \(text.split(separator: "\n").first ?? "") failed: \(String(cString: strerror(-result)))")
        }
    }

    private func reportLoadFailure() {
        guard !reportedLoadFailure else { return }
        reportedLoadFailure = true
        report("NOTIFY_SOCKET is set but systemd cannot be told anything: \(String(cString: csd_load_error())); install libsystemd0")
    }
}
