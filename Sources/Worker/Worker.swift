import Glibc
import Shared

/// The VMM stage: parses the command line, builds the machine and runs it.
/// Returns the process exit status; the Supervisor stub owns the process around it.
public enum Worker {
    public static func main(arguments: [String]) -> Int32 {
        let action: CommandLineAction
        do {
            action = try CommandLineParser.parse(arguments)
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
        case .run(let config):
            return run(config)
        }
    }

    static func run(_ config: MachineConfig) -> Int32 {
        blockTerminationSignals()
        do {
            let machine = try Machine(config: config)
            return try machine.run()
        } catch {
            Log.error("\(error)")
            return 1
        }
    }

    /// SIGINT/SIGTERM are taken through a signalfd on the event loop; they must be blocked in
    /// every thread, so block them before any thread exists (threads inherit the mask).
    public static func blockTerminationSignals() {
        var mask = sigset_t()
        sigemptyset(&mask)
        sigaddset(&mask, SIGINT)
        sigaddset(&mask, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &mask, nil)
    }
}
