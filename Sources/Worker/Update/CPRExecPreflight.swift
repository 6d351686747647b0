import Glibc

/// The checks a live update makes while the VM still runs, so a refusal touches nothing.
/// Each failure is one line saying what blocks the update and how to fix it.
enum CPRExecPreflight {
    /// Returns the program's path.
    static func check(machine: Machine, uri: MigrationURI, command: [String]) throws(QMPError) -> String {
        guard let program = command.first, !program.isEmpty else {
            throw QMPError("cpr-exec mode requires setting cpr-exec-command (migrate-set-parameters cpr-exec-command, or HMP migrate_set_parameter cpr-exec-command PROGRAM ARGS...)")
        }
        guard !uri.isStreaming else {
            throw QMPError("mode cpr-exec needs a non-streaming URI (file:PATH or memfd:), not \(uri): the new image reads the state after the exec")
        }
        let blockers = machine.ramBlocks.filter { !$0.survivesExec }.map(reason)
        guard blockers.isEmpty else {
            throw QMPError(blockers.joined(separator: "; "))
        }
        guard let path = resolve(program) else {
            let where_ = program.contains("/") ? "no such file or directory" : "not found in PATH"
            throw QMPError("cpr-exec-command: \(program): \(where_); the VM keeps running")
        }
        guard access(path, X_OK) == 0 else {
            throw QMPError("cpr-exec-command: \(path): \(SystemError.describe(errno)); the VM keeps running")
        }
        return path
    }

    /// QEMU's wording, plus what to do about this kind of block.
    private static func reason(_ block: RamBlock) -> String {
        let fix: String
        switch block.backing {
        case .anonymous where block.name == "pc.ram" || block.name == "pc.bios":
            fix = "start the VM with -machine memfd-alloc=on"
        case .anonymous:
            fix = "use memory-backend-memfd instead of memory-backend-ram"
        case .memfd, .file:
            fix = "set share=on on its memory backend"
        }
        return "Memory region \(block.name) is not compatible with CPR: it is \(block.backing.name) memory that does not survive exec (\(fix))"
    }

    static func resolve(_ program: String) -> String? {
        if program.contains("/") { return access(program, F_OK) == 0 ? program : nil }
        let search = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in search.split(separator: ":") where access("\(directory)/\(program)", F_OK) == 0 {
            return "\(directory)/\(program)"
        }
        return nil
    }
}
