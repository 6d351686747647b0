import Testing

@testable import cprctl

@Suite struct ArgumentParserTests {
    static func status(_ target: VMTarget = .automatic, json: Bool = false, timeout: Double = 5) -> CprctlCommand {
        .status(StatusOptions(target: target, json: json, timeoutSeconds: timeout))
    }

    @Test(
        arguments: [
            (["--help"], CprctlCommand.help),
            (["-h"], .help),
            (["help"], .help),
            (["--version"], .version),
            (["status"], status()),
            (["status", "--json"], status(json: true)),
            (["status", "web1"], status(.name("web1"))),
            (["status", "web1", "--json"], status(.name("web1"), json: true)),
            (["status", "--json", "web1"], status(.name("web1"), json: true)),
            (["status", "--socket", "/tmp/q.sock"], status(.socket("/tmp/q.sock"))),
            (["status", "--socket=/tmp/q.sock", "--json"], status(.socket("/tmp/q.sock"), json: true)),
            (["status", "--timeout", "0.5"], status(timeout: 0.5)),
            (["status", "--timeout=30", "web1"], status(.name("web1"), timeout: 30)),
            (["status", "--", "-odd-name"], status(.name("-odd-name"))),
            (["status", "--help"], .help),
            (["status", "web1", "-h"], .help),
        ] as [([String], CprctlCommand)])
    func validCommandLines(arguments: [String], expected: CprctlCommand) throws {
        #expect(try ArgumentParser.parse(arguments) == expected)
    }

    @Test(
        arguments: [
            ([], "missing command (try 'cprctl --help')"),
            (["stat"], "unknown command 'stat' (try 'cprctl --help')"),
            (["--frobnicate"], "unknown option '--frobnicate' (try 'cprctl --help')"),
            (["-v"], "unknown option '-v' (try 'cprctl --help')"),
            (["status", "--verbose"], "unknown option '--verbose' for status (try 'cprctl --help')"),
            (["status", "-j"], "unknown option '-j' for status (try 'cprctl --help')"),
            (["status", "a", "b"], "status takes one VM name, got 2: a b"),
            (["status", "web1", "--socket", "/x"], "give a VM name or --socket PATH, not both"),
            (["status", "--socket"], "option '--socket' needs a value (try 'cprctl --help')"),
            (["status", "--socket="], "option '--socket' needs a path"),
            (["status", "--socket", "/a", "--socket", "/b"], "option '--socket' given twice"),
            (["status", "--json=yes"], "option '--json' takes no value (try 'cprctl --help')"),
            (["status", "--timeout", "soon"], "invalid timeout 'soon': expected seconds, more than 0 and at most 86400"),
            (["status", "--timeout", "0"], "invalid timeout '0': expected seconds, more than 0 and at most 86400"),
            (["status", "--timeout", "nan"], "invalid timeout 'nan': expected seconds, more than 0 and at most 86400"),
            (["status", "--timeout"], "option '--timeout' needs a value (try 'cprctl --help')"),
            (["status", "a/b"], "invalid VM name 'a/b': a name cannot contain '/'"),
            (["status", ".."], "invalid VM name '..': a name cannot be \".\" or \"..\""),
            (["status", ""], "invalid VM name '': a name cannot be empty"),
        ] as [([String], String)])
    func invalidCommandLines(arguments: [String], message: String) {
        #expect(throws: UsageError(message)) { try ArgumentParser.parse(arguments) }
    }

    @Test func updateOptions() throws {
        #expect(try ArgumentParser.parse(["update", "web1"]) == .update(UpdateOptions(target: .name("web1"))))
        #expect(try ArgumentParser.parse(["update", "web1", "--no-bridges"]) == .update(UpdateOptions(target: .name("web1"), noBridges: true)))
        #expect(try ArgumentParser.parse(["update", "web1", "--no-probe"]) == .update(UpdateOptions(target: .name("web1"), noProbe: true)))
        #expect(throws: UsageError("option '--no-bridges' takes no value (try 'cprctl --help')")) {
            try ArgumentParser.parse(["update", "--no-bridges=yes"])
        }
    }
}

@Suite struct ControlCommandParsingTests {
    @Test func listStopCont() throws {
        #expect(try ArgumentParser.parse(["list"]) == .list(json: false))
        #expect(try ArgumentParser.parse(["list", "--json"]) == .list(json: true))
        #expect(try ArgumentParser.parse(["stop", "web1"]) == .control(ControlOptions(action: .stop, target: .name("web1"))))
        #expect(try ArgumentParser.parse(["cont", "--socket", "/tmp/q", "--timeout", "2"])
                == .control(ControlOptions(action: .cont, target: .socket("/tmp/q"), timeoutSeconds: 2)))
        #expect(try ArgumentParser.parse(["stop"]) == .control(ControlOptions(action: .stop)))
    }

    @Test func updateAll() throws {
        #expect(try ArgumentParser.parse(["update", "--all"]) == .update(UpdateOptions(all: true)))
        #expect(try ArgumentParser.parse(["update", "--all", "--keep-going", "--binary", "/x"]) == .update(UpdateOptions(binary: "/x", all: true, keepGoing: true)))
        #expect(throws: UsageError("update --all takes no VM name or --socket")) { try ArgumentParser.parse(["update", "--all", "web1"]) }
        #expect(throws: UsageError("update --all keeps each VM's own command line: drop '-- ARGS'")) { try ArgumentParser.parse(["update", "--all", "--", "-m", "1G"]) }
        #expect(throws: UsageError("--keep-going goes with --all")) { try ArgumentParser.parse(["update", "web1", "--keep-going"]) }
    }

    @Test func errors() {
        #expect(throws: UsageError("list takes no argument but --json, got 'web1' (try 'cprctl --help')")) { try ArgumentParser.parse(["list", "web1"]) }
        #expect(throws: UsageError("unknown option '--force' for stop (try 'cprctl --help')")) { try ArgumentParser.parse(["stop", "--force"]) }
        #expect(throws: UsageError("cont takes one VM name, got 2: a b")) { try ArgumentParser.parse(["cont", "a", "b"]) }
    }

    @Test("the table pads each column to its widest cell")
    func table() {
        #expect(ControlCommands.table([["NAME", "STATE"], ["web10", "running"]]) == "NAME   STATE\nweb10  running\n")
    }
}
