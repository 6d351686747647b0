import Shared

/// QEMU's migration commands (qapi/migration.json), for the modes this cprvmm implements.
extension QMPCommands {
    static let migration: [QMPCommand] = [
        QMPCommand(name: "migrate-set-parameters", parameters: [.optional("mode", .string)]) { machine, arguments in
            if let text = arguments["mode"]?.stringValue {
                machine.migrationMode = try parseMode(text)
            }
            return .object([:])
        },
        QMPCommand(name: "query-migrate-parameters", parameters: []) { machine, _ in
            .object(["mode": .string(machine.migrationMode.rawValue)])
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

    static func parseURI(_ text: String) throws(QMPError) -> MigrationURI {
        do {
            return try MigrationURI.parse(text)
        } catch {
            throw QMPError("\(error)")
        }
    }
}
