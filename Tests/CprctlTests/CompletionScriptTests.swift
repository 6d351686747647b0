import Foundation
import Testing

@testable import cprctl

@Suite struct CompletionScriptTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let path = packageRoot.appendingPathComponent("completion/cprctl.bash").path

    @Test("completion/cprctl.bash is what `cprctl completion bash` prints (scripts/make-man regenerates it)")
    func upToDate() throws {
        if ProcessInfo.processInfo.environment["CPRVMM_UPDATE_COMPLETION"] == "1" {
            try CompletionScript.bash.write(toFile: Self.path, atomically: true, encoding: .utf8)
            print("wrote \(Self.path)")
        }
        let committed = try String(contentsOfFile: Self.path, encoding: .utf8)
        #expect(committed == CompletionScript.bash, "completion/cprctl.bash is stale: run scripts/make-man")
        #expect(Cprctl.run(["completion", "bash"]) == CprctlResult(exitStatus: 0, output: CompletionScript.bash))
    }

    @Test("completion takes one shell: bash")
    func shells() {
        #expect(
            Cprctl.run(["completion"])
                == CprctlResult(exitStatus: 1, errorOutput: "cprctl: completion takes one shell name: bash (try 'cprctl --help')\n"))
        #expect(Cprctl.run(["completion", "zsh"]).exitStatus == 1)
    }

    @Test("the catalog the script is made from has every command --help lists, and only those")
    func catalogMatchesHelp() {
        #expect(Set(CommandCatalog.commands.map(\.name)) == Set(HelpCommands.names(in: Usage.text)))
    }

    @Test("every option the script offers is one the parser takes and the command's help shows")
    func catalogMatchesParser() {
        for command in CommandCatalog.commands {
            let entry = HelpCommands.entry(of: command.name, in: Usage.text)
            for option in command.options {
                var arguments = [command.name, option]
                if CommandCatalog.pathOptions.contains(option) || CommandCatalog.valueOptions.contains(option) { arguments.append("1") }
                do {
                    _ = try ArgumentParser.parse(arguments)
                } catch {
                    // Accepted but wrong alone (--keep-going without --all) is fine here.
                    #expect(!error.description.hasPrefix("unknown option"), "\(arguments): \(error)")
                }
                if option != "--help" { #expect(entry.contains(option), "the help of \(command.name) does not show \(option)") }
            }
            #expect(throws: Never.self, "cprctl \(command.name) --help") { try ArgumentParser.parse([command.name, "--help"]) }
        }
        for option in CommandCatalog.globalOptions {
            #expect(throws: Never.self, "cprctl \(option)") { try ArgumentParser.parse([option]) }
        }
    }

    @Test(
        "bash completes commands, options and VM names",
        .enabled(if: FileManager.default.isExecutableFile(atPath: "/bin/bash"), "needs /bin/bash; skipped"),
        arguments: [
            (["cprctl", "up"], ["update"]),
            (["cprctl", "c"], ["cont", "console", "completion"]),
            (["cprctl", "--v"], ["--version"]),
            (["cprctl", "update", "--ke"], ["--keep-going"]),
            (["cprctl", "status", "--"], ["--socket", "--json", "--timeout", "--help"]),
            (["cprctl", "status", ""], ["web1", "web2"]),
            (["cprctl", "console", "web"], ["web1", "web2"]),
            (["cprctl", "stop", "--timeout", "5", "web2"], ["web2"]),
            (["cprctl", "list", ""], []),
            (["cprctl", "status", "--timeout", ""], []),
            (["cprctl", "completion", ""], ["bash"]),
            (["cprctl", "update", "web1", "--", "-"], []),
            (["cprctl", "mi"], ["migrate"]),
            (["cprctl", "migrate", "--max-"], ["--max-bandwidth", "--max-passes"]),
            (["cprctl", "migrate", "we"], ["web1", "web2"]),
            (["cprctl", "migrate", "web1", "tcp:h:1", "--downtime-limit", ""], []),
        ] as [([String], [String])])
    func bashCompletes(words: [String], expected: [String]) throws {
        let runtime = TemporaryDirectory()
        defer { runtime.remove() }
        for name in ["web1", "web2", "old", "plain"] { runtime.makeDirectory(name) }
        runtime.makeSocketFile("web1/qmp.sock")
        runtime.makeSocketFile("web2/qmp.sock")
        runtime.makeSocketFile("old/console.sock")  // no qmp.sock: not a VM
        runtime.makeFile("plain/qmp.sock")  // a file, not a socket
        // The script as cprctl prints it (upToDate compares it with the committed file, which
        // it may be rewriting meanwhile).
        let script = runtime.path + "/cprctl.bash"
        try CompletionScript.bash.write(toFile: script, atomically: true, encoding: .utf8)
        #expect(try Self.complete(words, script: script, runtime: runtime.path) == expected)
    }

    /// COMPREPLY after _cprctl with COMP_WORDS = `words`, the cursor at the end of the last.
    static func complete(_ words: [String], script path: String, runtime: String) throws -> [String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        let script = #"source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _cprctl; printf '%s\n' "${COMPREPLY[@]}""#
        process.arguments = ["--norc", "--noprofile", "-c", script, "bash", path] + words
        process.environment = ["CPRVMM_RUNTIME_DIR": runtime, "PATH": "/usr/bin:/bin"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}

/// The commands of cprctl's help text: the lines of its "Commands:" section indented by two
/// spaces, named by their first word.
enum HelpCommands {
    static func names(in help: String) -> [String] {
        commandLines(in: help).map { String($0.dropFirst(2).prefix { $0 != " " }) }
    }

    /// The command's line and what follows it up to the next command or a blank line.
    static func entry(of name: String, in help: String) -> String {
        let lines = commandSection(of: help)
        guard let start = lines.firstIndex(where: { isCommandLine($0) && $0.dropFirst(2).prefix { $0 != " " } == name }) else { return "" }
        let end = lines[(start + 1)...].firstIndex { isCommandLine($0) || $0.isEmpty } ?? lines.count
        return lines[start..<end].joined(separator: "\n")
    }

    static func commandLines(in help: String) -> [String] {
        commandSection(of: help).filter(isCommandLine)
    }

    /// The lines after "Commands:" up to the next heading.
    private static func commandSection(of help: String) -> [String] {
        let lines = help.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let heading = lines.firstIndex(of: "Commands:") else { return [] }
        let rest = lines[(heading + 1)...]
        let end = rest.firstIndex { !$0.isEmpty && !$0.hasPrefix(" ") } ?? lines.count
        return Array(lines[(heading + 1)..<end])
    }

    private static func isCommandLine(_ line: String) -> Bool {
        line.hasPrefix("  ") && line.dropFirst(2).first?.isLowercase == true
    }
}
