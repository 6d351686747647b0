import Shared

/// The human monitor's commands (QEMU's HMP): one line in, text out. Used by `-monitor` and
/// by QMP's `human-monitor-command`. Output matches QEMU's wording where QEMU has the command.
struct HumanMonitor {
    unowned let machine: Machine

    static let commands: [(name: String, help: String)] = [
        ("cont|c", "resume emulation"),
        ("help|? [cmd]", "show the help"),
        ("info [subcommand]", "show various information about the system state"),
        ("migrate [-d] uri", "migrate to URI (using -d to not wait for completion)"),
        ("migrate_cancel", "cancel the current VM migration"),
        ("migrate_incoming uri", "Continue an incoming migration from an -incoming defer"),
        ("migrate_set_parameter parameter value", "Set the parameter for migration (mode)"),
        ("quit|q", "quit the emulator"),
        ("set_link name on|off", "change the link status of a network adapter"),
        ("stop|s", "stop emulation"),
    ]

    static let infoCommands: [(name: String, help: String)] = [
        ("info cpus", "show infos for each CPU"),
        ("info memdev", "show memory backends"),
        ("info migrate", "show migration status"),
        ("info migrate_parameters", "show current migration parameters"),
        ("info name", "show the current VM name"),
        ("info network", "show the network state"),
        ("info pci", "show PCI info"),
        ("info block", "show info of one block device or all block devices"),
        ("info status", "show the current VM status (running|paused)"),
        ("info version", "show the version of QEMU"),
    ]

    /// Runs one command line; returns its output, each line ending in "\n" (empty if none).
    /// A command that waits (`migrate` without -d) returns nil and hands its output to
    /// `later` once done; without `later` (QMP's human-monitor-command) it does not wait.
    func execute(_ line: String, later: ((String) -> Void)? = nil) -> String? {
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let command = words.first else { return "" }
        switch command {
        case "migrate":
            return migrate(Array(words.dropFirst()), later: later)
        case "migrate_cancel":
            machine.outgoingMigration?.cancel()
            return ""
        case "migrate_incoming":
            guard words.count == 2 else { return "Error: usage: migrate_incoming URI\n" }
            do { try machine.startDeferredIncoming(try QMPCommands.parseURI(words[1])) } catch { return "Error: \(error.desc)\n" }
            return ""
        case "migrate_set_parameter":
            guard words.count >= 3 else { return "Error: usage: migrate_set_parameter PARAMETER VALUE\n" }
            switch words[1] {
            case "mode":
                guard words.count == 3 else { return "Error: usage: migrate_set_parameter mode MODE\n" }
                do { machine.migrationMode = try QMPCommands.parseMode(words[2]) } catch { return "Error: \(error.desc)\n" }
            case "cpr-exec-command", "cpr-exec-args":
                machine.cprExecCommand = Array(words.dropFirst(2))
            case "x-cpr-exec-bridges":
                guard words.count == 3, ["on", "off"].contains(words[2]) else { return "Error: usage: migrate_set_parameter x-cpr-exec-bridges on|off\n" }
                machine.cprExecBridges = words[2] == "on"
            case "x-cpr-exec-probe":
                guard words.count == 3, ["on", "off"].contains(words[2]) else { return "Error: usage: migrate_set_parameter x-cpr-exec-probe on|off\n" }
                machine.cprExecProbe = words[2] == "on"
            default:
                return "Error: unknown migration parameter '\(words[1])'\n"
            }
            return ""
        case "help", "?":
            return help()
        case "info":
            return info(words.count > 1 ? words[1] : nil)
        case "stop", "s":
            machine.stopVM()
            return ""
        case "set_link":
            guard words.count == 3, words[2] == "on" || words[2] == "off" else { return "Usage: set_link name on|off\n" }
            guard let nic = machine.nics.first(where: { $0.id == words[1] || $0.config.netdev.id == words[1] }) else {
                return "Error: Device '\(words[1])' not found\n"
            }
            nic.net.setLink(up: words[2] == "on")
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

    private func migrate(_ arguments: [String], later: ((String) -> Void)?) -> String? {
        let detach = arguments.first == "-d"
        let rest = detach ? Array(arguments.dropFirst()) : arguments
        guard rest.count == 1 else { return "Error: usage: migrate [-d] URI\n" }
        let started: OutgoingMigration?
        do {
            started = try machine.startOutgoingMigration(try QMPCommands.parseURI(rest[0]))
        } catch {
            return "Error: \(error.desc)\n"
        }
        // A live update has no job to wait on: this monitor is replaced with the process image.
        guard let job = started, !detach, let later else { return "" }
        job.onFinish.append { status, reason in
            later(status == .failed ? "Error: \(reason ?? "migration failed")\n" : status == .cancelled ? "migration cancelled\n" : "")
        }
        return nil
    }

    /// `info migrate`, in QEMU's words.
    static func describeMigration(_ info: JSONObject) -> String {
        guard let status = info["status"]?.stringValue else { return "" }
        var text = "Migration status: \(status)\n"
        if let error = info["error-desc"]?.stringValue { text += "Error desc: \(error)\n" }
        if let total = info["total-time"]?.intValue { text += "total time: \(total) ms\n" }
        if let downtime = info["downtime"]?.intValue { text += "downtime: \(downtime) ms\n" }
        if let setup = info["setup-time"]?.intValue { text += "setup: \(setup) ms\n" }
        if let ram = info["ram"]?.objectValue {
            if let transferred = ram["transferred"]?.intValue { text += "transferred ram: \(transferred >> 10) kbytes\n" }
            if let remaining = ram["remaining"]?.intValue { text += "remaining ram: \(remaining >> 10) kbytes\n" }
            if let total = ram["total"]?.intValue { text += "total ram: \(total >> 10) kbytes\n" }
        }
        return text
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
        case "migrate":
            return HumanMonitor.describeMigration(machine.migrationInfo)
        case "pci":
            return HumanMonitor.describePCI(QMPCommands.pciDevices(machine))
        case "block":
            return HumanMonitor.describeBlock(machine.disks.map(QMPCommands.blockInfo))
        case "network":
            return HumanMonitor.describeNetwork(machine.nics.map(QMPCommands.nicInfo))
        case "migrate_parameters":
            return "mode: \(machine.migrationMode.rawValue)\ncpr-exec-command: \(machine.cprExecCommand.joined(separator: " "))\nx-cpr-exec-bridges: \(machine.cprExecBridges ? "on" : "off")\nx-cpr-exec-probe: \(machine.cprExecProbe ? "on" : "off")\n"
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
