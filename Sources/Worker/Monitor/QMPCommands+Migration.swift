import Shared

/// QEMU's migration commands (qapi/migration.json), for the modes this cprvmm implements.
extension QMPCommands {
    static let migration: [QMPCommand] = [
        QMPCommand(name: "migrate-set-parameters", parameters: [
            .optional("mode", .string), .optional("cpr-exec-command", .array), .optional("cpr-exec-args", .array),
            .optional("x-cpr-exec-bridges", .bool), .optional("x-cpr-exec-probe", .bool),
        ]) { machine, arguments in
            // Check everything before changing anything.
            let mode = try arguments["mode"]?.stringValue.map(parseMode)
            let command = try (arguments["cpr-exec-command"] ?? arguments["cpr-exec-args"]).map(parseCommand)
            if let mode { machine.migrationMode = mode }
            if let command { machine.cprExecCommand = command }
            if let bridges = arguments["x-cpr-exec-bridges"]?.boolValue { machine.cprExecBridges = bridges }
            if let probe = arguments["x-cpr-exec-probe"]?.boolValue { machine.cprExecProbe = probe }
            return .object([:])
        },
        QMPCommand(name: "query-migrate-parameters", parameters: []) { machine, _ in
            .object([
                "mode": .string(machine.migrationMode.rawValue),
                "cpr-exec-command": .array(machine.cprExecCommand.map { .string($0) }),
                "x-cpr-exec-bridges": .bool(machine.cprExecBridges),
                "x-cpr-exec-probe": .bool(machine.cprExecProbe),
            ])
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
