import Glibc
import Shared

/// `CPRVMM_TEST_STOP_AT=PHASE`: the process stops itself (SIGSTOP) when a live update reaches
/// PHASE, so that the failure-matrix tests (Tests/Systemd/run-tests) can kill or continue it
/// exactly there. Old image: `paused` (vCPUs paused, nothing saved), `saving` (part of the
/// state written), `saved` (state and CPR state written, bridges running the guest, right
/// before the exec). New image: `started` (before the VM is created), `loaded` (state loaded,
/// bridges still running the guest), `handover` (vCPUs taken over and restored, guest not yet
/// resumed). A migration's target: `incoming-loaded` (the whole stream loaded, the source not
/// yet told). Unset, it costs a comparison per phase.
enum TestStopPoint {
    static let variable = "CPRVMM_TEST_STOP_AT"

    /// Read once: the phases lie on the update's critical path.
    private static let stopAt: String? = getenv(variable).map { String(cString: $0) }

    static func reached(_ phase: String) {
        guard stopAt == phase else { return }
        Log.info("\(variable)=\(phase): the process stops here")
        fflush(nil)
        // Aimed at this thread: it stops on its way out of raise, before its next step. A
        // process-wide kill may wake another thread to begin the stop and let this one run on
        // for a moment (seen: a migration target sending its confirmation past its stop point).
        raise(SIGSTOP)
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
