import Glibc
import Shared

/// The QMP commands cprvmm implements, each with its parameters and handler. Handlers run on
/// the loop thread. Names, replies and errors follow QEMU's schema (qapi/*.json), so QMP
/// clients written for QEMU work unchanged; `x-query-cprvmm` is cprvmm's own.
struct QMPCommand {
    let name: String
    let parameters: [QMPParameter]
    let handler: (Machine, JSONObject) throws -> JSONValue
}

enum QMPCommands {
    static let all: [QMPCommand] = core + migration + devices + network

    static let core: [QMPCommand] = [
        QMPCommand(name: "qmp_capabilities", parameters: [.optional("enable", .array)]) { _, _ in
            // Reached only after negotiation (the server handles the first one).
            throw QMPError(.commandNotFound, "Capabilities negotiation is already complete, command ignored")
        },
        QMPCommand(name: "query-version", parameters: []) { _, _ in versionReply },
        QMPCommand(name: "query-status", parameters: []) { machine, _ in
            .object(["status": .string(machine.runState.rawValue), "running": .bool(machine.runState == .running)])
        },
        QMPCommand(name: "query-name", parameters: []) { machine, _ in
            machine.config.name.map { .object(["name": .string($0)]) } ?? .object([:])
        },
        QMPCommand(name: "stop", parameters: []) { machine, _ in
            machine.stopVM()
            return .object([:])
        },
        QMPCommand(name: "cont", parameters: []) { machine, _ in
            do { try machine.continueVM() } catch { throw QMPError("\(error)") }
            return .object([:])
        },
        QMPCommand(name: "quit", parameters: []) { machine, _ in
            machine.quit()
            return .object([:])
        },
        QMPCommand(name: "query-cpus-fast", parameters: []) { machine, _ in
            .array(machine.vcpuThreadIDs.enumerated().map { index, tid in
                .object([
                    "cpu-index": .int(Int64(index)),
                    "qom-path": .string("/machine/unattached/device[\(index)]"),
                    "thread-id": .int(Int64(tid)),
                    "props": .object(["core-id": .int(Int64(index)), "thread-id": 0, "socket-id": 0]),
                    "target": "x86_64",
                ])
            })
        },
        QMPCommand(name: "query-memdev", parameters: []) { machine, _ in
            .array(machine.ramBlocks.map(memdev))
        },
        QMPCommand(name: "query-commands", parameters: []) { _, _ in
            .array(all.map { .object(["name": .string($0.name)]) })
        },
        QMPCommand(name: "human-monitor-command", parameters: [.required("command-line", .string), .optional("cpu-index", .int)]) {
            machine, arguments in
            let line = arguments["command-line"]?.stringValue ?? ""
            let output = HumanMonitor(machine: machine).execute(line) ?? ""
            // HMP output over QMP uses CRLF line ends, as QEMU's does.
            return .string(output.replacingLF())
        },
        QMPCommand(name: "x-query-cprvmm", parameters: []) { machine, _ in statusReport(machine) },
    ]

    static let byName: [String: QMPCommand] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    static var versionReply: JSONValue {
        let parts = BuildInfo.version.split(separator: ".").map { Int64($0) ?? 0 } + [0, 0, 0]
        return .object([
            "qemu": .object(["major": .int(parts[0]), "minor": .int(parts[1]), "micro": .int(parts[2])]),
            "package": .string("cprvmm \(BuildInfo.version) (build id \(BuildInfo.buildID))"),
        ])
    }

    /// QEMU's Memdev, plus `backing` (memfd / file / anonymous), which a CPR operator needs.
    static func memdev(_ block: RamBlock) -> JSONValue {
        var object: JSONObject = [
            "id": .string(block.name),
            "size": .int(Int64(block.size)),
            "merge": true,
            "dump": true,
            "prealloc": false,
            "share": .bool(block.shared),
            "host-nodes": .array([]),
            "policy": "default",
            "backing": .string(block.backing.name),
        ]
        if case .file(let path) = block.backing { object["mem-path"] = .string(path) }
        return .object(object)
    }

    /// Everything `cprctl status` shows, in one reply.
    static func statusReport(_ machine: Machine) -> JSONValue {
        let now = ProcessClock.now()
        let memory: [JSONValue] = machine.ramBlocks.map { block in
            var object: JSONObject = [
                "id": .string(block.name), "size": .int(Int64(block.size)),
                "backing": .string(block.backing.name), "shared": .bool(block.shared),
            ]
            if case .file(let path) = block.backing { object["path"] = .string(path) }
            return .object(object)
        }
        return .object([
            "name": machine.config.name.map { .string($0) } ?? .null,
            "status": .string(machine.runState.rawValue),
            "running": .bool(machine.runState == .running),
            "pid": .int(Int64(getpid())),
            "binary": .string(Machine.executablePath),
            "version": .string(BuildInfo.version),
            "build-id": .string(BuildInfo.buildID),
            "image-started": .double(ProcessClock.imageStarted),
            "vm-started": .double(machine.vmStarted),
            "vm-uptime-ms": .int(Int64((now - machine.vmStarted) * 1000)),
            "vcpus": .int(Int64(machine.config.smp)),
            "memory": .array(memory),
            "sockets": .object([
                "qmp": .array(machine.qmpSocketPaths.map { .string($0) }),
                "hmp": .array(machine.hmpSocketPaths.map { .string($0) }),
                "serial": machine.serialSocketPath.map { .string($0) } ?? .null,
            ]),
            "update-generation": .int(Int64(machine.updateGeneration)),
            "update-failures": .int(Int64(machine.liveUpdateFailures)),
            "updates": .array(machine.updateHistory.map(updateReport)),
            "arguments": .array(CommandLine.arguments.map { .string($0) }),
            "builtin-guest": machine.builtinGuestStatus.map { .object($0) } ?? .null,
            "nics": .array(machine.nics.map(nicInfo)),
        ])
    }
}

extension QMPCommands {
    /// One live update as x-query-cprvmm reports it.
    static func updateReport(_ update: CPRState.Update) -> JSONValue {
        func image(_ image: CPRState.Image) -> JSONValue {
            .object(["path": .string(image.path), "version": .string(image.version), "build-id": .string(image.buildID)])
        }
        return .object([
            "generation": .int(Int64(update.generation)), "from": image(update.from), "to": image(update.to),
            "pause-us": .int(Int64(update.pauseMicroseconds)), "total-us": .int(Int64(update.totalMicroseconds)),
            "result": .string(update.result), "time": .double(update.time),
            "phases-us": .object(JSONObject(update.phases.map { ($0.name, JSONValue.int(Int64($0.microseconds))) })),
        ])
    }
}

extension String {
    /// "\n" → "\r\n" (HMP text as QEMU sends it over QMP and sockets).
    func replacingLF() -> String {
        var result = ""
        result.reserveCapacity(utf8.count + 8)
        for character in self {
            if character == "\n" { result += "\r\n" } else { result.append(character) }
        }
        return result
    }
}
