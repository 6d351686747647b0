/// Every command cprctl takes and the options each accepts, for the completion script and
/// for cprctl(1), which tells the help's command lines by these names. Tests hold it to the
/// parser and to --help, so a new command or option cannot be forgotten here.
enum CommandCatalog {
    struct Command {
        let name: String
        let options: [String]
        /// Whether a VM name (a directory of the runtime directory) may follow.
        var takesVMName = false
        /// Fixed words that may follow, such as a shell name.
        var words: [String] = []
    }

    static let commands: [Command] = [
        Command(name: "status", options: ["--socket", "--json", "--timeout", "--help"], takesVMName: true),
        Command(
            name: "update",
            options: ["--socket", "--all", "--keep-going", "--binary", "--no-bridges", "--no-probe", "--timeout", "--json", "--help"],
            takesVMName: true),
        Command(
            name: "migrate",
            options: [
                "--socket", "--downtime-limit", "--max-bandwidth", "--max-passes", "--auto-converge", "--json", "--timeout", "--help",
            ],
            takesVMName: true),
        Command(name: "list", options: ["--json", "--help"]),
        Command(name: "stop", options: ["--socket", "--timeout", "--json", "--help"], takesVMName: true),
        Command(name: "cont", options: ["--socket", "--timeout", "--json", "--help"], takesVMName: true),
        Command(name: "console", options: ["--socket", "--help"], takesVMName: true),
        Command(name: "completion", options: ["--help"], words: CompletionShell.allCases.map(\.rawValue)),
        Command(name: "help", options: []),
    ]

    /// Options before any command.
    static let globalOptions = ["-h", "--help", "--version"]
    /// Options whose value is a file name.
    static let pathOptions = ["--socket", "--binary"]
    /// Options whose value is free text (nothing to complete).
    static let valueOptions = ["--timeout", "--downtime-limit", "--max-bandwidth", "--max-passes"]
}
