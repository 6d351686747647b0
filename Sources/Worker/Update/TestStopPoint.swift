import Glibc
import Shared

/// `CPRVMM_TEST_STOP_AT=PHASE`: the process stops itself (SIGSTOP) when a live update reaches
/// PHASE, so that the failure-matrix tests (Tests/Systemd/run-tests) can kill or continue it
/// exactly there. Old image: `paused` (vCPUs paused, nothing saved), `saving` (part of the
/// state written), `saved` (state and CPR state written, bridges running the guest, right
/// before the exec). New image: `started` (before the VM is created), `loaded` (state loaded,
/// bridges still running the guest), `handover` (vCPUs taken over and restored, guest not yet
/// resumed). A pre-copy migration: `migrated` (the whole stream sent to the socket, the
/// target's confirmation not yet read). Unset, it costs a comparison per phase.
enum TestStopPoint {
    static let variable = "CPRVMM_TEST_STOP_AT"

    /// Read once: the phases lie on the update's critical path.
    private static let stopAt: String? = getenv(variable).map { String(cString: $0) }

    static func reached(_ phase: String) {
        guard stopAt == phase else { return }
        Log.info("\(variable)=\(phase): the process stops here")
        fflush(nil)
        kill(getpid(), SIGSTOP)
    }

    /// `CPRVMM_TEST_CRASH_AT=PHASE[@VERSION]`: the process dies of SIGSEGV at PHASE -- only in
    /// the binary of that version, if one is named -- as a binary with a bug there would. The
    /// recovery tests use `load` (the new image, right before it loads the saved state).
    static let crashVariable = "CPRVMM_TEST_CRASH_AT"
    private static let crashAt: String? = getenv(crashVariable).map { String(cString: $0) }

    static func crashIfRequested(_ phase: String) {
        guard let crashAt else { return }
        let parts = crashAt.split(separator: "@", maxSplits: 1).map(String.init)
        guard parts.first == phase, parts.count == 1 || parts[1] == BuildInfo.version else { return }
        Log.error("\(crashVariable)=\(crashAt): the process crashes here")
        fflush(nil)
        signal(SIGSEGV, SIG_DFL)
        kill(getpid(), SIGSEGV)
    }
}
