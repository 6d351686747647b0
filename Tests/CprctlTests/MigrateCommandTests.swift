import Foundation
import Glibc
import Shared
import Testing

@testable import cprctl

/// `cprctl migrate` against a scripted QMP server: what it asks, in which order, and what it
/// prints for each ending. (Real migrations: CprctlMigrateTests in the end-to-end tests.)
@Suite struct MigrateCommandTests {
    static let parameters: JSONValue = [
        "mode": "cpr-exec", "cpr-exec-command": ["/usr/bin/cprvmm"], "downtime-limit": 300, "max-bandwidth": 0, "x-max-passes": 0,
    ]
    static let capabilities: JSONValue = [["capability": "events", "state": true], ["capability": "auto-converge", "state": false]]

    /// Runs the command against `respond` (query-name, the parameters and the capabilities
    /// are answered unless `respond` returns nil); returns the result, what went to the
    /// progress output, and the commands the server got.
    static func run(
        _ options: MigrateOptions, _ respond: @escaping (String, JSONValue?) -> [FakeQMPServer.Send]?
    ) throws -> (result: CprctlResult, progress: String, commands: [(name: String, arguments: JSONValue?)]) {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let server = FakeQMPServer(directory: directory) { name, arguments in
            if let actions = respond(name, arguments) { return actions }
            switch name {
            case "query-name": return [.reply(["name": "web1"])]
            case "query-migrate-parameters": return [.reply(parameters)]
            case "query-migrate-capabilities": return [.reply(capabilities)]
            default: return [.reply([:])]
            }
        }
        var options = options
        options.target = .socket(server.path)
        var pipe: [Int32] = [-1, -1]
        try #require(Glibc.pipe(&pipe) == 0)
        let result = MigrateCommand.run(options, runtimeBase: directory.path, output: pipe[1])
        close(pipe[1])
        var progress = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while case let count = read(pipe[0], &buffer, buffer.count), count > 0 { progress += buffer[0..<count] }
        close(pipe[0])
        #expect(server.waitUntilDone())
        return (result, String(decoding: progress, as: UTF8.self), server.commands)
    }

    static func options(_ uri: String = "unix:/x", _ change: (inout MigrateOptions) -> Void = { _ in }) -> MigrateOptions {
        var options = MigrateOptions(uri: uri)
        change(&options)
        return options
    }

    /// query-migrate replies in turn: none yet, then `replies`, the last one again after that.
    final class Replies: @unchecked Sendable {
        private var queue: [[FakeQMPServer.Send]]
        init(_ replies: [[FakeQMPServer.Send]]) { queue = [[.reply([:])]] + replies }
        func next() -> [FakeQMPServer.Send] { queue.count > 1 ? queue.removeFirst() : queue[0] }
    }

    static let active = MigrationProgressTests.firstPass

    @Test("a completed migration: mode normal and the parameters given, migrate, polls, the final line")
    func completed() throws {
        let replies = Replies([[.reply(Self.active)], [.reply(MigrationProgressTests.completed)]])
        let run = try Self.run(Self.options { $0.downtimeLimitMs = 50; $0.maxBandwidth = 1 << 30; $0.maxPasses = 8 }) { name, _ in
            name == "query-migrate" ? replies.next() : nil
        }
        #expect(run.result == CprctlResult(exitStatus: 0, output: "web1: migrated to unix:/x in 5.1 s, downtime 4 ms, 537 MiB sent\n"))
        #expect(run.progress == "pass 1: transferred 196 MiB, remaining 614 MiB, 824 Mbit/s\n")
        #expect(run.commands.map(\.name) == [
            "query-name", "query-migrate", "query-migrate-parameters", "migrate-set-parameters", "migrate", "query-migrate", "query-migrate",
        ])
        #expect(run.commands[3].arguments == ["mode": "normal", "downtime-limit": 50, "max-bandwidth": .int(1 << 30), "x-max-passes": 8])
        #expect(run.commands[4].arguments == ["uri": "unix:/x"])
    }

    @Test("--json: the final query-migrate reply, on one line")
    func json() throws {
        let replies = Replies([[.reply(MigrationProgressTests.completed)]])
        let run = try Self.run(Self.options { $0.json = true }) { name, _ in name == "query-migrate" ? replies.next() : nil }
        #expect(run.result == CprctlResult(exitStatus: 0, output: JSON.serialize(MigrationProgressTests.completed) + "\n"))
        #expect(run.progress == "")
    }

    @Test("a failed migration: exit 1 with the VMM's reason")
    func failed() throws {
        let failed: JSONValue = ["status": "failed", "total-time": 3, "error-desc": "cannot connect to unix:/x: connection refused"]
        let replies = Replies([[.reply(failed)]])
        let run = try Self.run(Self.options()) { name, _ in name == "query-migrate" ? replies.next() : nil }
        #expect(run.result == .failure("migration of web1 to unix:/x failed: cannot connect to unix:/x: connection refused"))
    }

    @Test("a refused migrate puts back the mode, the parameters and the capability it changed")
    func refusedRestores() throws {
        let reason = "invalid migration URI 'ftp://x' (use file:PATH[,offset=N], unix:PATH, tcp:HOST:PORT, exec:COMMAND, or memfd: for a live update)"
        // The last migration was an incoming one (no ram counters): nothing under way here.
        let run = try Self.run(Self.options("ftp://x") { $0.downtimeLimitMs = 7; $0.autoConverge = true }) { name, _ in
            switch name {
            case "query-migrate": return [.reply(["status": "completed", "total-time": 300])]
            case "migrate": return [.error(reason)]
            default: return nil
            }
        }
        #expect(run.result == .failure("migration of web1 to ftp://x refused: \(reason)"))
        #expect(run.commands.map(\.name) == [
            "query-name", "query-migrate", "query-migrate-parameters", "migrate-set-parameters", "query-migrate-capabilities",
            "migrate-set-capabilities", "migrate", "migrate-set-parameters", "migrate-set-capabilities",
        ])
        #expect(run.commands[3].arguments == ["mode": "normal", "downtime-limit": 7])
        #expect(run.commands[5].arguments == ["capabilities": [["capability": "auto-converge", "state": true]]])
        #expect(run.commands[7].arguments == ["mode": "cpr-exec", "downtime-limit": 300])
        #expect(run.commands[8].arguments == ["capabilities": [["capability": "auto-converge", "state": false]]])
    }

    @Test("parameters the VMM refuses: nothing changed, no migrate")
    func refusedParameters() throws {
        let reason = "Parameter 'x-max-passes' expects a value in 0...9223372036854775807, not -1"
        let run = try Self.run(Self.options { $0.maxPasses = 3 }) { name, _ in
            name == "migrate-set-parameters" ? [.error(reason)] : nil
        }
        #expect(run.result == .failure("migration of web1 to unix:/x refused: \(reason)"))
        #expect(!run.commands.map(\.name).contains("migrate"))
    }

    @Test("a migration under way is left alone: its parameters would change at once")
    func underWay() throws {
        let run = try Self.run(Self.options { $0.downtimeLimitMs = 1 }) { name, _ in name == "query-migrate" ? [.reply(Self.active)] : nil }
        #expect(run.result == .failure("a migration of web1 is under way already (active): see cprctl status web1"))
        #expect(run.commands.map(\.name) == ["query-name", "query-migrate"])
    }

    @Test("a source that exits right after its migration completed (under systemd): its MIGRATION event tells")
    func sourceExitsAfterCompletion() throws {
        let replies = Replies([[.reply(Self.active)], [.event("MIGRATION", ["status": "completed"]), .close]])
        let run = try Self.run(Self.options()) { name, _ in name == "query-migrate" ? replies.next() : nil }
        #expect(run.result == CprctlResult(exitStatus: 0, output: "web1: migrated to unix:/x (its VMM exited before giving the final figures)\n"))
        // Without the event, the outcome is unknown.
        let lost = Replies([[.reply(Self.active)], [.close]])
        let unknown = try Self.run(Self.options()) { name, _ in name == "query-migrate" ? lost.next() : nil }
        #expect(unknown.result.exitStatus == 1)
        #expect(unknown.result.errorOutput.hasPrefix("cprctl: lost track of the migration of web1 to unix:/x: lost connection to "), "\(unknown.result)")
    }
}
