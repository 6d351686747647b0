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

@Suite struct MigrateParsingTests {
    static func migrate(_ target: VMTarget = .name("web1"), _ uri: String = "tcp:10.0.0.2:4444", _ change: (inout MigrateOptions) -> Void = { _ in }) -> CprctlCommand {
        var options = MigrateOptions(target: target, uri: uri)
        change(&options)
        return .migrate(options)
    }

    @Test(
        arguments: [
            (["migrate", "web1", "tcp:10.0.0.2:4444"], migrate()),
            (["migrate", "unix:/run/x.sock"], migrate(.automatic, "unix:/run/x.sock")),
            (["migrate", "--socket", "/tmp/q", "exec:cat >/dev/null"], migrate(.socket("/tmp/q"), "exec:cat >/dev/null")),
            (["migrate", "web1", "tcp:10.0.0.2:4444", "--downtime-limit", "50"], migrate { $0.downtimeLimitMs = 50 }),
            (["migrate", "--downtime-limit=0", "web1", "tcp:10.0.0.2:4444"], migrate { $0.downtimeLimitMs = 0 }),
            (["migrate", "web1", "tcp:10.0.0.2:4444", "--max-bandwidth", "100M"], migrate { $0.maxBandwidth = 100 << 20 }),
            (["migrate", "web1", "tcp:10.0.0.2:4444", "--max-bandwidth=125000000"], migrate { $0.maxBandwidth = 125_000_000 }),
            (["migrate", "web1", "tcp:10.0.0.2:4444", "--max-bandwidth", "2g"], migrate { $0.maxBandwidth = 2 << 30 }),
            (["migrate", "web1", "tcp:10.0.0.2:4444", "--max-bandwidth", "0"], migrate { $0.maxBandwidth = 0 }),
            (["migrate", "web1", "tcp:10.0.0.2:4444", "--max-passes", "5"], migrate { $0.maxPasses = 5 }),
            (["migrate", "web1", "tcp:10.0.0.2:4444", "--auto-converge", "--json"], migrate { $0.autoConverge = true; $0.json = true }),
            (["migrate", "web1", "tcp:10.0.0.2:4444", "--timeout", "30"], migrate { $0.timeoutSeconds = 30 }),
            (["migrate", "--", "-odd", "tcp:h:1"], migrate(.name("-odd"), "tcp:h:1")),
            (["migrate", "web1", "--help"], .help),
        ] as [([String], CprctlCommand)])
    func valid(arguments: [String], expected: CprctlCommand) throws {
        #expect(try ArgumentParser.parse(arguments) == expected)
    }

    @Test(
        arguments: [
            (["migrate"], "migrate needs a destination URI: tcp:HOST:PORT, unix:PATH, exec:COMMAND or file:PATH (try 'cprctl --help')"),
            (["migrate", "web1"], "migrate needs a destination URI: tcp:HOST:PORT, unix:PATH, exec:COMMAND or file:PATH (try 'cprctl --help')"),
            (["migrate", "tcp:10.0.0.2:4444", "web1"],
             "'web1' is not a migration URI (tcp:HOST:PORT, unix:PATH, exec:COMMAND or file:PATH): cprctl migrate NAME URI"),
            (["migrate", "web1", "unix:/a", "unix:/b"], "migrate takes a VM name and a URI, got 3 words: web1 unix:/a unix:/b"),
            (["migrate", "web1", "unix:/a", "--socket", "/q"], "give a VM name or --socket PATH, not both"),
            (["migrate", "a/b", "unix:/a"], "invalid VM name 'a/b': a name cannot contain '/'"),
            (["migrate", "web1", "unix:/a", "--downtime-limit", "-1"], "invalid downtime limit '-1': expected milliseconds, 0 to 2000000"),
            (["migrate", "web1", "unix:/a", "--downtime-limit", "+5"], "invalid downtime limit '+5': expected milliseconds, 0 to 2000000"),
            (["migrate", "web1", "unix:/a", "--downtime-limit", "2000001"], "invalid downtime limit '2000001': expected milliseconds, 0 to 2000000"),
            (["migrate", "web1", "unix:/a", "--downtime-limit"], "option '--downtime-limit' needs a value (try 'cprctl --help')"),
            (["migrate", "web1", "unix:/a", "--downtime-limit", "5", "--downtime-limit", "6"], "option '--downtime-limit' given twice"),
            (["migrate", "web1", "unix:/a", "--max-bandwidth", "fast"],
             "invalid bandwidth 'fast': expected bytes per second, e.g. 100M (suffixes K, M, G: powers of 1024; 0 = no cap)"),
            (["migrate", "web1", "unix:/a", "--max-bandwidth", "M"],
             "invalid bandwidth 'M': expected bytes per second, e.g. 100M (suffixes K, M, G: powers of 1024; 0 = no cap)"),
            (["migrate", "web1", "unix:/a", "--max-bandwidth", "99999999999G"],
             "invalid bandwidth '99999999999G': expected bytes per second, e.g. 100M (suffixes K, M, G: powers of 1024; 0 = no cap)"),
            (["migrate", "web1", "unix:/a", "--max-passes", "two"], "invalid pass count 'two': expected a whole number (0 = no limit)"),
            (["migrate", "web1", "unix:/a", "--auto-converge=on"], "option '--auto-converge' takes no value (try 'cprctl --help')"),
            (["migrate", "web1", "unix:/a", "--json=1"], "option '--json' takes no value (try 'cprctl --help')"),
            (["migrate", "web1", "unix:/a", "--timeout", "0"], "invalid timeout '0': expected seconds, more than 0 and at most 86400"),
            (["migrate", "web1", "unix:/a", "--speed", "1"], "unknown option '--speed' for migrate (try 'cprctl --help')"),
        ] as [([String], String)])
    func invalid(arguments: [String], message: String) {
        #expect(throws: UsageError(message)) { try ArgumentParser.parse(arguments) }
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
