import Shared

/// QEMU's migration commands (qapi/migration.json), for the modes this cprvmm implements.
extension QMPCommands {
    static let migration: [QMPCommand] = [
        QMPCommand(name: "migrate-set-parameters", parameters: [
            .optional("mode", .string), .optional("cpr-exec-command", .array), .optional("cpr-exec-args", .array),
            .optional("x-cpr-exec-bridges", .bool), .optional("x-cpr-exec-probe", .bool),
        ] + MigrationSettings.limits.keys.sorted().map { .optional($0, .int) }) { machine, arguments in
            // Check everything before changing anything.
            let mode = try arguments["mode"]?.stringValue.map(parseMode)
            let command = try (arguments["cpr-exec-command"] ?? arguments["cpr-exec-args"]).map(parseCommand)
            var settings = machine.migrationSettings
            for (name, range) in MigrationSettings.limits.sorted(by: { $0.key < $1.key }) {
                guard let value = arguments[name]?.intValue else { continue }
                guard value >= 0, range.contains(UInt64(value)) else {
                    throw QMPError("Parameter '\(name)' expects a value in \(range.lowerBound)...\(range.upperBound), not \(value)")
                }
                settings.set(name, UInt64(value))
            }
            if let mode { machine.migrationMode = mode }
            if let command { machine.cprExecCommand = command }
            if let bridges = arguments["x-cpr-exec-bridges"]?.boolValue { machine.cprExecBridges = bridges }
            if let probe = arguments["x-cpr-exec-probe"]?.boolValue { machine.cprExecProbe = probe }
            machine.setMigrationSettings(settings)
            return .object([:])
        },
        QMPCommand(name: "query-migrate-parameters", parameters: []) { machine, _ in
            var parameters: JSONObject = [
                "mode": .string(machine.migrationMode.rawValue),
                "cpr-exec-command": .array(machine.cprExecCommand.map { .string($0) }),
                "x-cpr-exec-bridges": .bool(machine.cprExecBridges),
                "x-cpr-exec-probe": .bool(machine.cprExecProbe),
            ]
            for (key, value) in machine.migrationSettings.parameters { parameters[key] = value }
            return .object(parameters)
        },
        QMPCommand(name: "migrate-set-capabilities", parameters: [.required("capabilities", .array)]) { machine, arguments in
            var settings = machine.migrationSettings
            for item in arguments["capabilities"]?.arrayValue ?? [] {
                guard case .object(let entry) = item, let name = entry["capability"]?.stringValue, let state = entry["state"]?.boolValue else {
                    throw QMPError("Invalid parameter type for 'capabilities', expected: a list of {\"capability\": NAME, \"state\": BOOL}")
                }
                switch name {
                case "events": settings.events = state
                case "auto-converge": settings.autoConverge = state
                default:
                    throw QMPError("Parameter 'capability' does not accept value '\(name)' (this cprvmm has: \(MigrationSettings.capabilityNames.joined(separator: ", ")))")
                }
            }
            if let job = machine.outgoingMigration, !job.currentStatus.isFinished {
                throw QMPError("There's a migration process in progress")
            }
            machine.setMigrationSettings(settings)
            return .object([:])
        },
        QMPCommand(name: "query-migrate-capabilities", parameters: []) { machine, _ in
            .array(machine.migrationSettings.capabilities)
        },
        QMPCommand(name: "migrate", parameters: [
            .required("uri", .string), .optional("detach", .bool), .optional("resume", .bool),
        ]) { machine, arguments in
            if arguments["resume"]?.boolValue == true { throw QMPError("resuming a postcopy migration is not supported") }
            try machine.startOutgoingMigration(try parseURI(arguments["uri"]?.stringValue ?? ""))
            return .object([:])
        },
        QMPCommand(name: "migrate_cancel", parameters: []) { machine, _ in
            machine.outgoingMigration?.cancel()
            return .object([:])
        },
        QMPCommand(name: "query-migrate", parameters: []) { machine, _ in .object(machine.migrationInfo) },
        QMPCommand(name: "migrate-incoming", parameters: [.required("uri", .string)]) { machine, arguments in
            try machine.startDeferredIncoming(try parseURI(arguments["uri"]?.stringValue ?? ""))
            return .object([:])
        },
    ]

    static func parseMode(_ text: String) throws(QMPError) -> MigrationMode {
        guard let mode = MigrationMode(rawValue: text) else {
            let known = MigrationMode.allCases.map(\.rawValue).joined(separator: ", ")
            throw QMPError("Parameter 'mode' does not accept value '\(text)' (this cprvmm has: \(known))")
        }
        return mode
    }

    /// QEMU's cpr-exec-command: a list of strings, program first.
    static func parseCommand(_ value: JSONValue) throws(QMPError) -> [String] {
        let words = value.arrayValue?.compactMap(\.stringValue) ?? []
        guard words.count == value.arrayValue?.count, !words.isEmpty else {
            throw QMPError("Invalid parameter type for 'cpr-exec-command', expected: a non-empty array of strings")
        }
        return words
    }

    static func parseURI(_ text: String) throws(QMPError) -> MigrationURI {
        do {
            return try MigrationURI.parse(text)
        } catch {
            throw QMPError("\(error)")
        }
    }
}
