import Shared

/// The human monitor's commands (QEMU's HMP): one line in, text out. Used by `-monitor` and
/// by QMP's `human-monitor-command`. Output matches QEMU's wording where QEMU has the command.
struct HumanMonitor {
    unowned let machine: Machine

    static let commands: [(name: String, help: String)] = [
        ("cont|c", "resume emulation"),
        ("help|? [cmd]", "show the help"),
        ("info [subcommand]", "show various information about the system state"),
        ("quit|q", "quit the emulator"),
        ("stop|s", "stop emulation"),
    ]

    static let infoCommands: [(name: String, help: String)] = [
        ("info cpus", "show infos for each CPU"),
        ("info memdev", "show memory backends"),
        ("info name", "show the current VM name"),
        ("info status", "show the current VM status (running|paused)"),
        ("info version", "show the version of QEMU"),
    ]

    /// Runs one command line; returns its output, each line ending in "\n" (empty if none).
    func execute(_ line: String) -> String {
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let command = words.first else { return "" }
        switch command {
        case "help", "?":
            return help()
        case "info":
            return info(words.count > 1 ? words[1] : nil)
        case "stop", "s":
            machine.stopVM()
            return ""
        case "cont", "c":
            do { try machine.continueVM() } catch { return "Error: \(error)\n" }
            return ""
        case "quit", "q":
            machine.quit()
            return ""
        default:
            return "unknown command: '\(command)'\n"
        }
    }

    private func help() -> String {
        (HumanMonitor.commands + HumanMonitor.infoCommands).map { "\($0.name) -- \($0.help)\n" }.joined()
    }

    private func info(_ what: String?) -> String {
        switch what {
        case nil:
            return HumanMonitor.infoCommands.map { "\($0.name) -- \($0.help)\n" }.joined()
        case "status":
            return "VM status: \(machine.runState.humanDescription)\n"
        case "version":
            return "\(BuildInfo.version) (cprvmm, build id \(BuildInfo.buildID))\n"
        case "name":
            return machine.config.name.map { "\($0)\n" } ?? ""
        case "cpus":
            return machine.vcpuThreadIDs.enumerated().map { index, tid in
                "\(index == 0 ? "*" : " ") CPU #\(index): thread_id=\(tid)\n"
            }.joined()
        case "memdev":
            return machine.ramBlocks.map { block in
                var text = "memory backend: \(block.name)\n"
                text += "  size:  \(block.size)\n"
                text += "  merge:  true\n  dump:  true\n  prealloc:  false\n"
                text += "  share:  \(block.shared)\n"
                text += "  backing:  \(block.backing.name)"
                if case .file(let path) = block.backing { text += " \(path)" }
                text += "\n  policy:  default\n"
                return text
            }.joined()
        case let other?:
            return "info: unknown subcommand '\(other)' (try 'info' for a list)\n"
        }
    }
}
