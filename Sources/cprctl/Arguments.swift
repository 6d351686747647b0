import Shared

/// What the command line asks for.
enum CprctlCommand: Equatable {
    case help
    case version
    case status(StatusOptions)
    case update(UpdateOptions)
    case migrate(MigrateOptions)
    case list(json: Bool)
    case control(ControlOptions)
    case console(ConsoleOptions)
    case completion(CompletionShell)
}

/// `cprctl completion SHELL`: the shells cprctl writes a completion script for.
enum CompletionShell: String, CaseIterable {
    case bash
}

/// `cprctl console [NAME | --socket PATH]`: --socket names the console socket itself.
struct ConsoleOptions: Equatable {
    var target: VMTarget = .automatic
}

/// `cprctl stop|cont [NAME | --socket PATH] [--timeout S]`: QMP's stop and cont.
struct ControlOptions: Equatable {
    enum Action: String { case stop, cont }
    var action: Action
    var target: VMTarget = .automatic
    var timeoutSeconds: Double = 5
    /// --json: the run state as a JSON object.
    var json = false
}

/// `cprctl update [NAME | --socket PATH] [--binary PATH] [--no-bridges] [--no-probe] [--timeout S] [-- ARGS...]`.
struct UpdateOptions: Equatable {
    var target: VMTarget = .automatic
    /// The program to exec; default: the running image's argv[0], resolved again.
    var binary: String?
    /// The new command line after the program; default: the running one.
    var arguments: [String]?
    var timeoutSeconds: Double = 60
    /// --no-bridges: the guest stays paused across the exec (x-cpr-exec-bridges off), for a
    /// new binary that predates vCPU bridges (it refuses a bridged state and rolls back).
    var noBridges = false
    /// --no-probe: exec without first asking the binary what it reads (x-cpr-exec-probe off),
    /// for a binary older than the probe (it refuses the --cpr-probe option).
    var noProbe = false
    /// --all: every VM in the runtime directory, one after another; --keep-going: on past a failure.
    var all = false
    var keepGoing = false
    /// --json: the completed update's record as a JSON object (one line per VM with --all).
    var json = false
}

/// `cprctl migrate [NAME | --socket PATH] URI [--downtime-limit MS] [--max-bandwidth RATE]
/// [--max-passes N] [--auto-converge] [--json] [--timeout S]`: a live migration (mode normal),
/// followed until it ends. A parameter left out keeps the value the VM has.
struct MigrateOptions: Equatable {
    var target: VMTarget = .automatic
    /// Where the stream goes: tcp:HOST:PORT, unix:PATH, exec:COMMAND, file:PATH (the VMM checks it).
    var uri = ""
    /// QMP downtime-limit (ms).
    var downtimeLimitMs: UInt64?
    /// QMP max-bandwidth (bytes per second, 0 = no cap).
    var maxBandwidth: UInt64?
    /// QMP x-max-passes (0 = no limit).
    var maxPasses: UInt64?
    /// The auto-converge capability on (never switched off: left out, it stays as it is).
    var autoConverge = false
    /// --json: the final query-migrate reply instead of the human lines.
    var json = false
    /// Bounds each wait for the VM's answer, not the migration.
    var timeoutSeconds: Double = 5
}

struct StatusOptions: Equatable {
    var target: VMTarget = .automatic
    var json = false
    var timeoutSeconds: Double = 5
}

/// Which VM to talk to.
enum VMTarget: Equatable {
    /// The only VM in the runtime directory.
    case automatic
    /// A VM by its `-name`, found in the runtime directory.
    case name(String)
    /// An explicit QMP socket path.
    case socket(String)
}

/// A command line cprctl does not understand; the description is the whole message.
struct UsageError: Error, Equatable, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

enum ArgumentParser {
    static let helpHint = "(try 'cprctl --help')"

    static func parse(_ arguments: [String]) throws(UsageError) -> CprctlCommand {
        guard let first = arguments.first else { throw UsageError("missing command \(helpHint)") }
        switch first {
        case "-h", "--help", "help": return .help
        case "--version": return .version
        case "status": return try parseStatus(Array(arguments.dropFirst()))
        case "update": return try parseUpdate(Array(arguments.dropFirst()))
        case "migrate": return try parseMigrate(Array(arguments.dropFirst()))
        case "list": return try parseList(Array(arguments.dropFirst()))
        case "stop", "cont": return try parseControl(ControlOptions.Action(rawValue: first)!, Array(arguments.dropFirst()))
        case "console": return try parseConsole(Array(arguments.dropFirst()))
        case "completion": return try parseCompletion(Array(arguments.dropFirst()))
        default:
            if first.hasPrefix("-") { throw UsageError("unknown option '\(first)' \(helpHint)") }
            throw UsageError("unknown command '\(first)' \(helpHint)")
        }
    }

    private static func parseStatus(_ arguments: [String]) throws(UsageError) -> CprctlCommand {
        var options = StatusOptions()
        var names: [String] = []
        var socket: String?
        var timeout: Double?
        var index = 0
        var optionsEnded = false

        /// The value of an option given as `--opt VALUE` or `--opt=VALUE`.
        func value(of option: String, inline: String?) throws(UsageError) -> String {
            if let inline { return inline }
            index += 1
            guard index < arguments.count else { throw UsageError("option '\(option)' needs a value \(helpHint)") }
            return arguments[index]
        }

        while index < arguments.count {
            let argument = arguments[index]
            if optionsEnded || !argument.hasPrefix("-") || argument == "-" {
                names.append(argument)
                index += 1
                continue
            }
            let (option, inline) = splitOption(argument)
            switch option {
            case "--":
                optionsEnded = true
            case "-h", "--help":
                return .help
            case "--json":
                guard inline == nil else { throw UsageError("option '--json' takes no value \(helpHint)") }
                options.json = true
            case "--socket":
                guard socket == nil else { throw UsageError("option '--socket' given twice") }
                let path = try value(of: option, inline: inline)
                guard !path.isEmpty else { throw UsageError("option '--socket' needs a path") }
                socket = path
            case "--timeout":
                guard timeout == nil else { throw UsageError("option '--timeout' given twice") }
                timeout = try Self.timeout(try value(of: option, inline: inline))
            default:
                throw UsageError("unknown option '\(option)' for status \(helpHint)")
            }
            index += 1
        }

        options.target = try target(command: "status", names: names, socket: socket)
        if let timeout { options.timeoutSeconds = timeout }
        return .status(options)
    }

    private static func parseUpdate(_ arguments: [String]) throws(UsageError) -> CprctlCommand {
        var options = UpdateOptions()
        var names: [String] = []
        var socket: String?
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            let (option, inline) = splitOption(argument)
            func value() throws(UsageError) -> String {
                if let inline { return inline }
                index += 1
                guard index < arguments.count else { throw UsageError("option '\(option)' needs a value \(helpHint)") }
                return arguments[index]
            }
            switch option {
            case "--":
                // Everything after -- is the VM's new command line (without the program).
                options.arguments = Array(arguments[(index + 1)...])
                index = arguments.count
                continue
            case "-h", "--help":
                return .help
            case "--socket":
                socket = try value()
            case "--binary":
                options.binary = try value()
            case "--no-bridges":
                guard inline == nil else { throw UsageError("option '--no-bridges' takes no value \(helpHint)") }
                options.noBridges = true
            case "--no-probe":
                guard inline == nil else { throw UsageError("option '--no-probe' takes no value \(helpHint)") }
                options.noProbe = true
            case "--all":
                options.all = true
            case "--keep-going":
                options.keepGoing = true
            case "--json":
                guard inline == nil else { throw UsageError("option '--json' takes no value \(helpHint)") }
                options.json = true
            case "--timeout":
                options.timeoutSeconds = try Self.timeout(try value())
            default:
                guard !argument.hasPrefix("-") else { throw UsageError("unknown option '\(option)' for update \(helpHint)") }
                names.append(argument)
            }
            index += 1
        }
        options.target = try target(command: "update", names: names, socket: socket)
        if options.all {
            guard options.target == .automatic else { throw UsageError("update --all takes no VM name or --socket") }
            guard options.arguments == nil else { throw UsageError("update --all keeps each VM's own command line: drop '-- ARGS'") }
        } else if options.keepGoing {
            throw UsageError("--keep-going goes with --all")
        }
        return .update(options)
    }

    private static func parseMigrate(_ arguments: [String]) throws(UsageError) -> CprctlCommand {
        var options = MigrateOptions()
        var words: [String] = []
        var socket: String?
        var timeout: Double?
        var index = 0
        var optionsEnded = false
        var seen: Set<String> = []
        while index < arguments.count {
            let argument = arguments[index]
            if optionsEnded || !argument.hasPrefix("-") || argument == "-" {
                words.append(argument)
                index += 1
                continue
            }
            let (option, inline) = splitOption(argument)
            func value() throws(UsageError) -> String {
                if let inline { return inline }
                index += 1
                guard index < arguments.count else { throw UsageError("option '\(option)' needs a value \(helpHint)") }
                return arguments[index]
            }
            func flag() throws(UsageError) {
                guard inline == nil else { throw UsageError("option '\(option)' takes no value \(helpHint)") }
            }
            if option.hasPrefix("--"), option != "--", !seen.insert(option).inserted {
                throw UsageError("option '\(option)' given twice")
            }
            switch option {
            case "--":
                optionsEnded = true
            case "-h", "--help":
                return .help
            case "--socket":
                let path = try value()
                guard !path.isEmpty else { throw UsageError("option '--socket' needs a path") }
                socket = path
            case "--downtime-limit":
                let text = try value()
                guard let milliseconds = wholeNumber(text), milliseconds <= maxDowntimeLimitMs else {
                    throw UsageError("invalid downtime limit '\(text)': expected milliseconds, 0 to \(maxDowntimeLimitMs)")
                }
                options.downtimeLimitMs = milliseconds
            case "--max-bandwidth":
                options.maxBandwidth = try bandwidth(try value())
            case "--max-passes":
                let text = try value()
                guard let passes = wholeNumber(text), passes <= UInt64(Int64.max) else {
                    throw UsageError("invalid pass count '\(text)': expected a whole number (0 = no limit)")
                }
                options.maxPasses = passes
            case "--auto-converge":
                try flag()
                options.autoConverge = true
            case "--json":
                try flag()
                options.json = true
            case "--timeout":
                timeout = try Self.timeout(try value())
            default:
                throw UsageError("unknown option '\(option)' for migrate \(helpHint)")
            }
            index += 1
        }
        // NAME URI, or URI alone (--socket, or the only VM). A URI always has a scheme
        // ("tcp:", "unix:", ...): a lone word without one is a VM name whose URI is missing.
        guard words.count <= 2 else {
            throw UsageError("migrate takes a VM name and a URI, got \(words.count) words: \(words.joined(separator: " "))")
        }
        let uri = words.last ?? ""
        let forms = "tcp:HOST:PORT, unix:PATH, exec:COMMAND or file:PATH"
        guard uri.contains(":") else {
            if words.count == 2 { throw UsageError("'\(uri)' is not a migration URI (\(forms)): cprctl migrate NAME URI") }
            throw UsageError("migrate needs a destination URI: \(forms) \(helpHint)")
        }
        options.uri = uri
        options.target = try target(command: "migrate", names: Array(words.dropLast()), socket: socket)
        if let timeout { options.timeoutSeconds = timeout }
        return .migrate(options)
    }

    /// QEMU's upper bound for downtime-limit (ms), which cprvmm keeps.
    static let maxDowntimeLimitMs: UInt64 = 2_000_000

    /// A --max-bandwidth value: bytes per second, with an optional K, M or G suffix
    /// (powers of 1024, as QEMU's HMP migrate_set_parameter reads them); 0 = no cap.
    static func bandwidth(_ text: String) throws(UsageError) -> UInt64 {
        let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        var digits = Substring(text)
        var unit: UInt64 = 1
        if let last = text.last, let scale = units[Character(last.uppercased())] {
            unit = scale
            digits = digits.dropLast()
        }
        guard let number = wholeNumber(digits),
              case let (bytes, overflow) = number.multipliedReportingOverflow(by: unit), !overflow, bytes <= UInt64(Int64.max)
        else {
            throw UsageError(
                "invalid bandwidth '\(text)': expected bytes per second, e.g. 100M (suffixes K, M, G: powers of 1024; 0 = no cap)")
        }
        return bytes
    }

    /// Decimal digits only (UInt64 alone would take "+5").
    private static func wholeNumber(_ text: some StringProtocol) -> UInt64? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        return UInt64(text)
    }

    private static func parseList(_ arguments: [String]) throws(UsageError) -> CprctlCommand {
        var json = false
        for argument in arguments {
            switch argument {
            case "--json": json = true
            case "-h", "--help": return .help
            default: throw UsageError("list takes no argument but --json, got '\(argument)' \(helpHint)")
            }
        }
        return .list(json: json)
    }

    private static func parseControl(_ action: ControlOptions.Action, _ arguments: [String]) throws(UsageError) -> CprctlCommand {
        var options = ControlOptions(action: action)
        var names: [String] = []
        var socket: String?
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            let (option, inline) = splitOption(argument)
            func value() throws(UsageError) -> String {
                if let inline { return inline }
                index += 1
                guard index < arguments.count else { throw UsageError("option '\(option)' needs a value \(helpHint)") }
                return arguments[index]
            }
            switch option {
            case "-h", "--help":
                return .help
            case "--socket":
                socket = try value()
            case "--timeout":
                options.timeoutSeconds = try Self.timeout(try value())
            case "--json":
                guard inline == nil else { throw UsageError("option '--json' takes no value \(helpHint)") }
                options.json = true
            default:
                guard !argument.hasPrefix("-") else { throw UsageError("unknown option '\(option)' for \(action.rawValue) \(helpHint)") }
                names.append(argument)
            }
            index += 1
        }
        options.target = try target(command: action.rawValue, names: names, socket: socket)
        return .control(options)
    }

    private static func parseConsole(_ arguments: [String]) throws(UsageError) -> CprctlCommand {
        var names: [String] = []
        var socket: String?
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            let (option, inline) = splitOption(argument)
            switch option {
            case "-h", "--help":
                return .help
            case "--socket":
                guard socket == nil else { throw UsageError("option '--socket' given twice") }
                if let inline {
                    socket = inline
                } else {
                    index += 1
                    guard index < arguments.count else { throw UsageError("option '--socket' needs a value \(helpHint)") }
                    socket = arguments[index]
                }
                guard socket?.isEmpty == false else { throw UsageError("option '--socket' needs a path") }
            default:
                guard !argument.hasPrefix("-") else { throw UsageError("unknown option '\(option)' for console \(helpHint)") }
                names.append(argument)
            }
            index += 1
        }
        return .console(ConsoleOptions(target: try target(command: "console", names: names, socket: socket)))
    }

    private static func parseCompletion(_ arguments: [String]) throws(UsageError) -> CprctlCommand {
        let shells = CompletionShell.allCases.map(\.rawValue).joined(separator: ", ")
        if arguments == ["-h"] || arguments == ["--help"] { return .help }
        guard arguments.count == 1, let shell = CompletionShell(rawValue: arguments[0]) else {
            throw UsageError("completion takes one shell name: \(shells) \(helpHint)")
        }
        return .completion(shell)
    }

    /// A --timeout value: seconds, more than 0 and at most a day.
    private static func timeout(_ text: String) throws(UsageError) -> Double {
        guard let seconds = Double(text), seconds.isFinite, seconds > 0, seconds <= 86400 else {
            throw UsageError("invalid timeout '\(text)': expected seconds, more than 0 and at most 86400")
        }
        return seconds
    }

    /// The VM a command names: at most one NAME, or --socket PATH, or neither (automatic).
    private static func target(command: String, names: [String], socket: String?) throws(UsageError) -> VMTarget {
        if names.count > 1 { throw UsageError("\(command) takes one VM name, got \(names.count): \(names.joined(separator: " "))") }
        if let name = names.first {
            if socket != nil { throw UsageError("give a VM name or --socket PATH, not both") }
            do { try RuntimeDirectory.validate(name: name) } catch { throw UsageError(error.description) }
            return .name(name)
        }
        return socket.map { .socket($0) } ?? .automatic
    }

    /// "--socket=/x" → ("--socket", "/x"); "--json" → ("--json", nil).
    private static func splitOption(_ argument: String) -> (String, String?) {
        guard argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") else { return (argument, nil) }
        return (String(argument[..<equals]), String(argument[argument.index(after: equals)...]))
    }
}
