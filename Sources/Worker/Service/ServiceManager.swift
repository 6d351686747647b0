import Shared

/// What the VMM tells the service manager it runs under (systemd's sd_notify vocabulary).
public enum ServiceNotification: Equatable, Sendable {
    /// READY=1: the guest runs (or waits, as configured); the start or reload is done.
    case ready(status: String)
    /// RELOADING=1 + MONOTONIC_USEC: a live update starts.
    case reloading(status: String)
    /// STATUS=: one human line for `systemctl status`.
    case status(String)
    /// STOPPING=1: an orderly shutdown started.
    case stopping(status: String)
    /// EXTEND_TIMEOUT_USEC: a long operation (an incoming migration) is still making progress.
    case extendTimeout(microseconds: UInt64)
    /// WATCHDOG=1.
    case watchdog
    /// FDSTORE=1 + FDNAME: keep this fd in the service's fd store across a crash and restart.
    case storeFD(name: String, fd: Int32)
    /// FDSTOREREMOVE=1 + FDNAME.
    case removeStoredFD(name: String)
}

/// The conversation with the service manager. The Supervisor owns it (docs/platform.md, process model) and installs
/// it as `Worker.serviceManager`; without one (not under systemd) the VMM sends nothing.
public protocol ServiceManager: AnyObject {
    /// Sends the notifications, in order; fd-less ones may share one message.
    func notify(_ notifications: [ServiceNotification])
    /// The unit's WatchdogSec=, in microseconds, if it set one for this process.
    var watchdogMicroseconds: UInt64? { get }
    /// The fds systemd passed from its fd store (LISTEN_FDS), by name. Called once, first.
    func takeStoredFDs() -> [CPRState.InheritedFD]
}

extension Worker {
    /// Installed by the Supervisor before `main` when the process runs under a service manager.
    nonisolated(unsafe) public static var serviceManager: ServiceManager?

    static func notifyService(_ notifications: ServiceNotification...) {
        serviceManager?.notify(notifications)
    }

    static func notifyService(_ notifications: [ServiceNotification]) {
        serviceManager?.notify(notifications)
    }
}
