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
        ("migrate_set_capability capability state", "Enable/Disable the usage of a capability for migration"),
        ("migrate_set_parameter parameter value", "Set the parameter for migration"),
        ("quit|q", "quit the emulator"),
        ("set_link name on|off", "change the link status of a network adapter"),
        ("stop|s", "stop emulation"),
    ]

    static let infoCommands: [(name: String, help: String)] = [
        ("info cpus", "show infos for each CPU"),
        ("info memdev", "show memory backends"),
        ("info migrate", "show migration status"),
        ("info migrate_capabilities", "show current migration capabilities"),
        ("info migrate_parameters", "show current migration parameters"),
        ("info name", "show the current VM name"),
        ("info network", "show the network state"),
        ("info pci", "show PCI info"),
        ("info registers", "show the cpu registers"),
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
            case let name where MigrationSettings.limits[name] != nil:
                // QEMU's HMP takes max-bandwidth as a size (100M) and the rest as numbers.
                let parsed = name == "max-bandwidth" ? SizeParser.parse(words[2], defaultUnit: 1 << 20) : UInt64(words[2])
                guard words.count == 3, let value = parsed, MigrationSettings.limits[name]!.contains(value) else {
                    let range = MigrationSettings.limits[name]!
                    return "Error: usage: migrate_set_parameter \(name) N (\(range.lowerBound)...\(range.upperBound)\(name == "max-bandwidth" ? " bytes/s, or with a K/M/G suffix" : ""))\n"
                }
                var settings = machine.migrationSettings
                settings.set(name, value)
                machine.setMigrationSettings(settings)
            default:
                return "Error: unknown migration parameter '\(words[1])'\n"
            }
            return ""
        case "migrate_set_capability":
            guard words.count == 3, ["on", "off"].contains(words[2]) else { return "Error: usage: migrate_set_capability CAPABILITY on|off\n" }
            if let job = machine.outgoingMigration, !job.currentStatus.isFinished { return "Error: There's a migration process in progress\n" }
            var settings = machine.migrationSettings
            switch words[1] {
            case "events": settings.events = words[2] == "on"
            case "auto-converge": settings.autoConverge = words[2] == "on"
            default: return "Error: Parameter 'capability' does not accept value '\(words[1])' (this cprvmm has: \(MigrationSettings.capabilityNames.joined(separator: ", ")))\n"
            }
            machine.setMigrationSettings(settings)
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

    /// `info migrate`, in QEMU 7.2's layout (hmp_info_migrate): the status line with a
    /// failure's reason, times, then the ram counters.
    static func describeMigration(_ info: JSONObject) -> String {
        guard let status = info["status"]?.stringValue else { return "" }
        var text = "Migration status: \(status)"
        if let error = info["error-desc"]?.stringValue { text += " (\(error))" }
        text += "\n"
        if let total = info["total-time"]?.intValue { text += "total time: \(total) ms\n" }
        if let expected = info["expected-downtime"]?.intValue { text += "expected downtime: \(expected) ms\n" }
        if let downtime = info["downtime"]?.intValue { text += "downtime: \(downtime) ms\n" }
        if let setup = info["setup-time"]?.intValue { text += "setup: \(setup) ms\n" }
        if let ram = info["ram"]?.objectValue {
            func value(_ key: String) -> Int64 { ram[key]?.intValue ?? 0 }
            text += "transferred ram: \(value("transferred") >> 10) kbytes\n"
            if case .double(let mbps) = ram["mbps"] {
                let hundredths = Int((mbps * 100).rounded())
                let fraction = String(hundredths % 100)
                text += "throughput: \(hundredths / 100).\(fraction.count < 2 ? "0" + fraction : fraction) mbps\n"
            }
            text += "remaining ram: \(value("remaining") >> 10) kbytes\n"
            text += "total ram: \(value("total") >> 10) kbytes\n"
            if ram["normal"] != nil {
                text += "duplicate: \(value("duplicate")) pages\n"
                text += "skipped: 0 pages\n"
                text += "normal: \(value("normal")) pages\n"
                text += "normal bytes: \(value("normal-bytes") >> 10) kbytes\n"
                text += "dirty sync count: \(value("dirty-sync-count"))\n"
                text += "page size: \(value("page-size") >> 10) kbytes\n"
                text += "multifd bytes: 0 kbytes\n"
                text += "pages-per-second: \(value("pages-per-second"))\n"
                if value("dirty-pages-rate") > 0 { text += "dirty pages rate: \(value("dirty-pages-rate")) pages\n" }
                if value("precopy-bytes") > 0 { text += "precopy ram: \(value("precopy-bytes") >> 10) kbytes\n" }
                if value("downtime-bytes") > 0 { text += "downtime ram: \(value("downtime-bytes") >> 10) kbytes\n" }
            }
        }
        if let throttle = info["cpu-throttle-percentage"]?.intValue { text += "cpu throttle percentage: \(throttle)\n" }
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
        case "registers":
            return machine.registerDump().enumerated().map { index, lines in
                "CPU#\(index)\n" + lines.map { $0 + "\n" }.joined()
            }.joined()
        case "block":
            return HumanMonitor.describeBlock(machine.disks.map(QMPCommands.blockInfo))
        case "network":
            return HumanMonitor.describeNetwork(machine.nics.map(QMPCommands.nicInfo))
        case "migrate_parameters":
            let settings = machine.migrationSettings
            return "mode: \(machine.migrationMode.rawValue)\ncpr-exec-command: \(machine.cprExecCommand.joined(separator: " "))\nx-cpr-exec-bridges: \(machine.cprExecBridges ? "on" : "off")\nx-cpr-exec-probe: \(machine.cprExecProbe ? "on" : "off")\n"
                + "downtime-limit: \(settings.downtimeLimitMs) ms\nmax-bandwidth: \(settings.maxBandwidth) bytes/second\n"
                + "cpu-throttle-initial: \(settings.throttleInitial)\ncpu-throttle-increment: \(settings.throttleIncrement)\nmax-cpu-throttle: \(settings.throttleMax)\nx-max-passes: \(settings.maxPasses)\n"
        case "migrate_capabilities":
            let settings = machine.migrationSettings
            return "events: \(settings.events ? "on" : "off")\nauto-converge: \(settings.autoConverge ? "on" : "off")\n"
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
