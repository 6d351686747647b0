import Glibc
import Shared


/// The VMM stage: parses the command line, builds the machine and runs it.
/// Returns the process exit status; the Supervisor stub owns the process around it.
public enum Worker {
    public static func main(arguments: [String]) -> Int32 {
        // A live update's preflight asks what this binary reads; it starts no VM and takes
        // nothing (no fd store, no CPR state).
        if CPRExecProbe.isRequested(arguments) { return CPRExecProbe.answer(arguments: arguments) }
        // A live update left state for this image, or systemd passed back its fd store after
        // a crash: take it before anything else.
        let stored = serviceManager?.takeStoredFDs() ?? []
        // A binary that already died on the stored state hands it to the fallback binary.
        RecoveryFallback.checkStored(stored, arguments: arguments)
        var inherited = LiveUpdateArrival.takeInheritedState()
        StartupTrace.mark("cpr state")
        if case .success(let cpr) = inherited, cpr.rollbackReason == nil { RecoveryFallback.recordExecArrival() }
        if inherited != nil { TestStopPoint.reached("started") }
        if inherited == nil, let recovered = FDStoreRecovery.state(from: stored) {
            inherited = .success(recovered)
        }
        let action: CommandLineAction
        do {
            action = try CommandLineParser.parse(arguments)
            StartupTrace.mark("parse")
        } catch {
            Log.error("\(error)")
            return 1
        }
        switch action {
        case .help:
            print(Usage.text, terminator: Usage.text.hasSuffix("\n") ? "" : "\n")
            return 0
        case .version:
            print(BuildInfo.versionLine)
            return 0
        case .run(var config):
            Log.level = Log.Level.allCases.first { $0.name == config.logLevel } ?? .info
            if case .success(let cpr) = inherited, cpr.fromFDStore {
                config.incoming = .uri(.memfd)  // the saved state is the stored memfd
            }
            switch inherited {
            case nil:
                return run(config, cpr: nil)
            case .success(let cpr):
                return run(config, cpr: cpr)
            case .failure(let error):
                // Without the CPR state there is no way back to the previous image.
                Log.error("cannot read the live-update state this image inherited: \(error)")
                return 1
            }
        }
    }

    static func run(_ config: MachineConfig, cpr: CPRState?) -> Int32 {
        blockTerminationSignals()
        let machine: Machine
        do {
            machine = try Machine(config: config, cprState: cpr)
        } catch {
            guard let cpr else {
                Log.error("\(error)")
                return 1
            }
            var incoming: MigrationURI?
            if case .uri(let uri) = config.incoming { incoming = uri }
            Log.error(LiveUpdateArrival.failed(cpr, reason: "\(error)", incoming: incoming))
            return 1
        }
        do {
            return try machine.run()
        } catch {
            Log.error("\(error)")
            return 1
        }
    }

    /// Signals the VMM takes through a signalfd on its event loop (Machine.watchSignals).
    /// SIGCHLD: the tasks of earlier live updates (teardown holders, vCPU bridges) are reaped
    /// as they exit, however fast updates follow each other.
    static let handledSignals = [SIGINT, SIGTERM, SIGHUP, SIGCHLD]

    /// The handled signals must be blocked in every thread, so block them before any thread
    /// exists (threads inherit the mask). A live update's exec keeps them blocked, so one
    /// that arrives during the update stays pending for the new image.
    public static func blockTerminationSignals() {
        var mask = sigset_t()
        sigemptyset(&mask)
        for signal in handledSignals { sigaddset(&mask, signal) }
        pthread_sigmask(SIG_BLOCK, &mask, nil)
    }
}
