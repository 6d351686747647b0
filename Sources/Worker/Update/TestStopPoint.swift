import Glibc

/// `CPRVMM_TEST_STOP_AT=PHASE`: the process stops itself (SIGSTOP) when a live update reaches
/// PHASE, so that the failure-matrix tests (Tests/Systemd/run-tests) can kill or continue it
/// exactly there. Old image: `paused` (vCPUs paused, nothing saved), `saving` (part of the
/// state written), `saved` (state and CPR state written, bridges running the guest, right
/// before the exec). New image: `started` (before the VM is created), `loaded` (state loaded,
/// bridges still running the guest), `handover` (vCPUs taken over and restored, guest not yet
/// resumed). Unset, it costs a comparison per phase.
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
}
