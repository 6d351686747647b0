import Glibc
import Shared

/// `cprctl console`: the VM's serial console (`-serial unix:PATH,server=on,wait=off`) on this
/// terminal, or between a pipe and stdout.
enum ConsoleCommand {
    /// cprvmm serves one console client and closes any other at once (SerialBackend). A close
    /// this soon, before a single byte came, is taken for that rather than for the VM quitting.
    static let refusalWindowNanoseconds: UInt64 = 1_000_000_000

    static func run(
        _ options: ConsoleOptions, runtimeBase: String, input: Int32 = 0, output: Int32 = 1, messages: Int32 = 2
    ) -> CprctlResult {
        let target: ConsoleTarget
        do {
            target = try ConsoleTarget.resolve(options.target, base: runtimeBase)
        } catch {
            return .failure(error.description)
        }
        let socket: Int32
        do {
            socket = try target.connect()
        } catch {
            return .failure(error.description)
        }
        defer { close(socket) }
        let connected = ProcessClock.monotonicNanoseconds()

        // Writing to a closed pipe must not kill cprctl, least of all with the terminal raw.
        let previousPipeHandler = signal(SIGPIPE, SIG_IGN)
        defer { signal(SIGPIPE, previousPipeHandler) }
        var terminal: RawTerminal?
        if isatty(input) != 0 {
            // Before raw mode, while the terminal still ends the line properly.
            let line = "cprctl: connected to \(target.title) (Ctrl-] to leave)\n"
            _ = line.withCString { write(messages, $0, strlen($0)) }
            terminal = RawTerminal(fd: input)
        }
        let outcome = ConsoleSession(input: input, output: output, socket: socket).run()
        terminal?.restore()

        switch outcome {
        case .escaped, .outputClosed:
            return CprctlResult(exitStatus: 0)
        case .closedByVM(let receivedBytes, let inputEnded):
            if receivedBytes == 0 && !inputEnded && ProcessClock.monotonicNanoseconds() - connected < refusalWindowNanoseconds {
                return .failure(
                    "\(target.subject) closed as soon as cprctl connected: cprvmm serves one console client at a time (is another one attached?)")
            }
            return CprctlResult(exitStatus: 0, errorOutput: "cprctl: \(target.subject) closed\n")
        case .failed(let message):
            return .failure(message)
        }
    }
}
