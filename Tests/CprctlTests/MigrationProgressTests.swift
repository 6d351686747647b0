import Shared
import Testing

@testable import cprctl

/// What cprctl migrate and cprctl status print, from query-migrate replies as cprvmm's
/// OutgoingMigration writes them.
@Suite struct MigrationProgressTests {
    static let gib: Int64 = 1 << 30
    static let mib: Int64 = 1 << 20

    /// A query-migrate reply: `status`, the top-level fields in `extra`, and the ram counters.
    static func reply(
        _ status: String, total: Int64 = gib, transferred: Int64 = 0, remaining: Int64? = nil, normal: Int64 = 0,
        duplicate: Int64 = 0, passes: Int64 = 0, mbps: Double = 0, extra: JSONObject = [:]
    ) -> JSONValue {
        var object: JSONObject = ["status": .string(status), "total-time": 0, "setup-time": 0]
        for (key, value) in extra { object[key] = value }
        object["ram"] = [
            "transferred": .int(transferred), "total": .int(total), "remaining": .int(remaining ?? total),
            "duplicate": .int(duplicate), "normal": .int(normal), "normal-bytes": .int(normal * 4096), "page-size": 4096,
            "dirty-sync-count": .int(max(0, passes - 1)), "dirty-pages-rate": 0, "mbps": .double(mbps), "pages-per-second": 0,
            "precopy-bytes": .int(transferred), "downtime-bytes": 0, "postcopy-bytes": 0, "x-passes": .int(passes),
        ]
        return .object(object)
    }

    static func snapshot(_ reply: JSONValue) throws -> MigrationSnapshot {
        try #require(MigrationSnapshot(reply))
    }

    /// In the first pass, 40% of 1 GiB gone through (50,000 pages sent, 55,000 found zero),
    /// 205 MB sent in 1.99 s of streaming.
    static var firstPass: JSONValue {
        reply("active", transferred: 205_000_000, normal: 50_000, duplicate: 55_000, passes: 1,
              extra: ["total-time": 2000, "setup-time": 10])
    }

    /// The third pass: 100 MiB dirty at the last look, the guest throttled.
    static var thirdPass: JSONValue {
        reply("active", transferred: 1300 * mib, remaining: 100 * mib, normal: 330_000, duplicate: 140_000, passes: 3, mbps: 840.3,
              extra: ["total-time": 12_000, "expected-downtime": 120, "cpu-throttle-percentage": 20])
    }

    static var completed: JSONValue {
        reply("completed", transferred: 537 * mib, remaining: 0, normal: 137_000, duplicate: 130_000, passes: 4, mbps: 900,
              extra: ["total-time": 5100, "downtime": 4, "x-downtime-us": 4321])
    }

    @Test("the first pass counts the pages gone through: remaining is all of RAM until the pass ends")
    func firstPass() throws {
        let first = try Self.snapshot(Self.firstPass)
        #expect(first.percent == 40)
        #expect(first.bytesLeft == UInt64(Self.gib) - 105_000 * 4096)
        #expect(MigrationProgress.plainLine(first) == "pass 1: transferred 196 MiB, remaining 614 MiB, 824 Mbit/s")
        #expect(
            MigrationProgress.terminalLine(first, width: 80)
                == "[#######............]   40%  196 MiB sent  824 Mbit/s  614 MiB left  pass 1")
    }

    @Test("later passes: the share of RAM clean at the last look, the VMM's rate, the throttle")
    func laterPass() throws {
        let third = try Self.snapshot(Self.thirdPass)
        #expect(third.percent == 90)
        #expect(MigrationProgress.plainLine(third) == "pass 3: transferred 1300 MiB, remaining 100 MiB, 840 Mbit/s, throttle 20%")
        let line = MigrationProgress.terminalLine(third, width: 100)
        // 28 characters of bar: what the 67 of the figures leave of 99.
        #expect(line == "[" + String(repeating: "#", count: 25) + "...]   90%  1300 MiB sent  840 Mbit/s  100 MiB left  pass 3  throttle 20%")
        #expect(line.count <= 99)
        // Narrower than the figures: the bar shrinks to 10, then the last figures go.
        #expect(MigrationProgress.terminalLine(third, width: 40) == "[#########.]   90%  1300 MiB sent")
        #expect(MigrationProgress.terminalLine(third, width: 10) == "[########")
        #expect(MigrationProgress.terminalLine(third, width: 200).hasPrefix("[" + String(repeating: "#", count: 27) + "...]"))
    }

    @Test("set-up, cancelling, completed, and a stop-and-copy (no passes counted)")
    func otherStates() throws {
        let setup = try Self.snapshot(Self.reply("setup"))
        #expect(MigrationProgress.terminalLine(setup, width: 80) == "[...................]    0%  setting up")
        let cancelling = try Self.snapshot(Self.reply("cancelling", transferred: 10 * Self.mib, normal: 2560, passes: 1))
        #expect(MigrationProgress.terminalLine(cancelling, width: 80).hasSuffix("]    0%  cancelling  10 MiB sent  0 Mbit/s  1014 MiB left  pass 1"))
        let done = try Self.snapshot(Self.completed)
        #expect(done.percent == 100 && done.bytesLeft == 0 && done.isFinished)
        #expect(MigrationProgress.terminalLine(done, width: 80).hasPrefix("[###################]  100%  537 MiB sent  900 Mbit/s  0 MiB left"))
        // file: is stop-and-copy: no pass is counted, the one there is shows as pass 1.
        let stopAndCopy = try Self.snapshot(
            Self.reply("active", total: 256 * Self.mib, transferred: 64 * Self.mib, normal: 16_384, duplicate: 16_384, extra: ["total-time": 1000]))
        #expect(MigrationProgress.plainLine(stopAndCopy) == "pass 1: transferred 64 MiB, remaining 128 MiB, 537 Mbit/s")
        #expect(stopAndCopy.percent == 50)
    }

    @Test("the final line of a completed migration")
    func completedLine() throws {
        let done = try Self.snapshot(Self.completed)
        #expect(
            MigrationProgress.completedLine(done, name: "web1", uri: "tcp:10.0.0.2:4444")
                == "web1: migrated to tcp:10.0.0.2:4444 in 5.1 s, downtime 4 ms, 537 MiB sent")
    }

    @Test("cprctl status: one line for the outgoing migration under way or the last one")
    func statusLines() throws {
        #expect(MigrationProgress.statusLine(try Self.snapshot(Self.reply("setup"))) == "setup")
        #expect(
            MigrationProgress.statusLine(try Self.snapshot(Self.firstPass))
                == "active, pass 1, 40% of 1 GiB, 196 MiB sent")
        #expect(
            MigrationProgress.statusLine(try Self.snapshot(Self.thirdPass))
                == "active, pass 3, 90% of 1 GiB, 1300 MiB sent, expected downtime 120 ms, throttle 20%")
        #expect(MigrationProgress.statusLine(try Self.snapshot(Self.completed)) == "completed in 5.1 s, downtime 4 ms, 537 MiB sent")
        let failed = Self.reply("failed", extra: ["total-time": 12, "error-desc": "cannot connect to unix:/nonexistent: no such file or directory"])
        #expect(
            MigrationProgress.statusLine(try Self.snapshot(failed))
                == "failed after 0.0 s: cannot connect to unix:/nonexistent: no such file or directory")
        #expect(MigrationProgress.statusLine(try Self.snapshot(Self.reply("cancelled", extra: ["total-time": 2345]))) == "cancelled after 2.3 s")
        #expect(MigrationProgress.statusLine(try Self.snapshot(Self.reply("completed", extra: ["total-time": 125_000]))).hasPrefix("completed in 2min 5s,"))
    }

    @Test("only an outgoing migration's reply has ram counters; {} is no migration")
    func directions() throws {
        #expect(MigrationSnapshot(["status": "completed", "total-time": 300])?.isOutgoing == false)
        #expect(MigrationSnapshot(["status": "completed", "mode": "cpr-exec", "downtime": 1])?.isOutgoing == false)
        #expect(try Self.snapshot(Self.completed).isOutgoing)
        #expect(MigrationSnapshot([:]) == nil)
        #expect(MigrationSnapshot(.null) == nil)
    }

    @Test("plain lines: at each new pass but at most one a second, and every ten seconds in a long pass")
    func plainLineCadence() throws {
        var plain = PlainProgress()
        func pass(_ number: Int64, _ status: String = "active") -> MigrationSnapshot {
            MigrationSnapshot(Self.reply(status, transferred: number * Self.mib, remaining: Self.gib - number * Self.mib, passes: number))!
        }
        #expect(plain.line(for: pass(0, "setup"), now: 0) == nil)
        #expect(plain.line(for: pass(1), now: 0.2)?.hasPrefix("pass 1: ") == true)
        #expect(plain.line(for: pass(1), now: 0.4) == nil)
        #expect(plain.line(for: pass(2), now: 0.8) == nil)  // under a second since the last line
        #expect(plain.line(for: pass(3), now: 1.5)?.hasPrefix("pass 3: ") == true)
        #expect(plain.line(for: pass(3), now: 3) == nil)
        #expect(plain.line(for: pass(3), now: 11) == nil)
        #expect(plain.line(for: pass(3), now: 12)?.hasPrefix("pass 3: ") == true)
        #expect(plain.line(for: pass(3, "cancelling"), now: 30) == nil)
        #expect(plain.line(for: pass(4, "completed"), now: 40) == nil)
    }

    @Test(arguments: [
        (0, "0 MiB"), (52_429, "0.1 MiB"), (3_670_016, "3.5 MiB"), (10 << 20, "10 MiB"), (432_013_312, "412 MiB"), (5 << 30, "5120 MiB"),
    ] as [(UInt64, String)])
    func mebibytes(bytes: UInt64, expected: String) {
        #expect(MigrationProgress.mib(bytes) == expected)
    }

    @Test func ratesAndTimes() {
        #expect(MigrationProgress.rate(0) == "0 Mbit/s")
        #expect(MigrationProgress.rate(0.54) == "0.5 Mbit/s")
        #expect(MigrationProgress.rate(9.94) == "9.9 Mbit/s")
        #expect(MigrationProgress.rate(9.96) == "10 Mbit/s")
        #expect(MigrationProgress.rate(840.5) == "841 Mbit/s")
        #expect(MigrationProgress.rate(.nan) == "? Mbit/s")
        #expect(MigrationProgress.seconds(milliseconds: 0) == "0.0 s")
        #expect(MigrationProgress.seconds(milliseconds: 5149) == "5.1 s")
        #expect(MigrationProgress.seconds(milliseconds: 59_940) == "59.9 s")
        #expect(MigrationProgress.seconds(milliseconds: 61_000) == "1min 1s")
    }
}
