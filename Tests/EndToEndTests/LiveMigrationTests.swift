import Foundation
import Testing

/// Two private network namespaces joined by a veth pair, made and removed by the test: a
/// source "host" (10.0.9.1) and a target "host" (10.0.9.2). Never the host's own network.
final class HostPair {
    let source: NetNamespace
    let target: NetNamespace
    static let targetIP = "10.0.9.2"

    init() throws {
        source = try NetNamespace(tap: false)
        target = try NetNamespace(tap: false)
        _ = try runTool(NetNamespace.ip, ["-n", source.name, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", target.name])
        for (namespace, device, address) in [(source, "veth0", "10.0.9.1/24"), (target, "veth1", "10.0.9.2/24")] {
            let added = try runTool(NetNamespace.ip, ["-n", namespace.name, "addr", "add", address, "dev", device])
            let up = try runTool(NetNamespace.ip, ["-n", namespace.name, "link", "set", device, "up"])
            guard added.status == 0, up.status == 0 else { throw ConfigurationFailure("veth: \(added.output) \(up.output)") }
        }
    }
}

extension VirtualMachines {
    /// Pre-copy live migration over TCP between two network namespaces: the guest runs while
    /// its RAM is copied and carries on, on the target, where it was.
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason), .enabled(if: NetNamespace.available, NetNamespace.unavailableReason))
    struct LiveMigrationTests {
        nonisolated(unsafe) static var nextPort = 4440

        struct Pair {
            let hosts: HostPair
            let source: VMProcess
            let sourceQMP: QMPLineClient
            let target: VMProcess
            let targetQMP: QMPLineClient
            let uri: String
        }

        /// A running source VM in one namespace and a target waiting on tcp: in the other.
        static func start(_ arguments: [String], target targetOptions: [String] = []) throws -> Pair {
            let hosts = try HostPair()
            nextPort += 1
            let uri = "tcp:\(HostPair.targetIP):\(nextPort)"
            let targetSocket = temporarySocketPath("lmt")
            let target = try hosts.target.vm([Binaries.cprvmm] + arguments + targetOptions + ["-qmp", "unix:\(targetSocket),server=on,wait=off", "-incoming", uri])
            let targetQMP = try connectWhenListening(targetSocket)
            let sourceSocket = temporarySocketPath("lms")
            let source = try hosts.source.vm([Binaries.cprvmm] + arguments + ["-qmp", "unix:\(sourceSocket),server=on,wait=off"])
            let sourceQMP = try connectWhenListening(sourceSocket)
            return Pair(hosts: hosts, source: source, sourceQMP: sourceQMP, target: target, targetQMP: targetQMP, uri: uri)
        }

        /// The value of `"key": N` in a JSON reply (the first one).
        static func number(_ key: String, in reply: String) -> Int64? {
            guard let range = reply.range(of: "\"\(key)\": ") else { return nil }
            return Int64(reply[range.upperBound...].prefix { $0.isNumber })
        }

        @Test("1 GiB, fill=50, over tcp: the guest runs during the copy, pauses briefly, and ticks on at the target")
        func precopyOneGiB() throws {
            let pair = try Self.start(["-m", "1G", "-builtin-guest", "fill=50", "-serial", "stdio"])
            pair.source.waitForOutput(timeout: 60, "tick 500") { VMProcess.ticks(in: $0).last ?? 0 >= 500 }
            let ticksBefore = pair.source.lastTick
            #expect(pair.sourceQMP.execute(#"{"execute": "migrate", "arguments": {"uri": "\#(pair.uri)"}}"#) == #"{"return": {}}"#)
            let info = MigrationTests.waitForMigration(pair.sourceQMP, timeout: 300)
            #expect(info.contains(#""status": "completed""#), "\(info)")
            // Pre-copy: a first pass over all RAM while the guest ran, then at least one look at the dirty log.
            #expect((Self.number("x-passes", in: info) ?? 0) >= 1, "\(info)")
            #expect((Self.number("dirty-sync-count", in: info) ?? 0) >= 2, "\(info)")
            #expect(Self.number("total", in: info) == 1 << 30, "\(info)")
            // Half the RAM holds the pattern; the other half is zero and does not travel.
            #expect((Self.number("normal", in: info) ?? 0) >= (512 << 20) / 4096, "\(info)")
            #expect((Self.number("transferred", in: info) ?? Int64.max) < 600 << 20, "\(info)")
            // The guest ticked during the copy (it ran), and the pause was far below the copy time.
            #expect(pair.source.lastTick > ticksBefore + 100, "the guest did not run during the migration")
            if let downtime = Self.number("downtime", in: info), let total = Self.number("total-time", in: info) {
                #expect(downtime * 4 < total, "downtime \(downtime) ms of \(total) ms: not pre-copy")
            }
            #expect(pair.sourceQMP.skippedEvents.contains { $0.contains(#""event": "MIGRATION_PASS""#) } || pair.sourceQMP.nextLine(timeout: 2)?.contains("MIGRATION") == true)
            #expect(pair.sourceQMP.execute(#"{"execute": "query-status"}"#) == #"{"return": {"status": "postmigrate", "running": false}}"#)
            MigrationTests.expectGuestContinued(from: pair.source, on: pair.target, targetClient: pair.targetQMP)
            #expect(pair.targetQMP.execute(#"{"execute": "query-status"}"#) == #"{"return": {"status": "running", "running": true}}"#)
            // A second migration of a migrated VM is refused: the guest runs elsewhere now.
            #expect(pair.sourceQMP.execute(#"{"execute": "migrate", "arguments": {"uri": "\#(pair.uri)"}}"#)?.contains("postmigrate") == true)
            _ = pair.source.terminate()
            _ = pair.target.terminate()
        }

        static func dirtySweeps(_ client: QMPLineClient) -> Int {
            (BuiltinGuestDiskTests.status(client)["dirty-sweeps"] as? NSNumber)?.intValue ?? 0
        }

        @Test("a guest rewriting its RAM: passes follow its writes, no page arrives stale")
        func dirtyingGuest() throws {
            // dirty= checks every page it rewrites still holds the previous sweep's value: a
            // page the dirty log missed arrives stale and the target reports MEMORY CORRUPTION.
            // fill=90 leaves ~25 MiB to rewrite, 10% of RAM a second: a sweep about every second.
            let pair = try Self.start(["-m", "256", "-builtin-guest", "fill=90,dirty=10", "-serial", "stdio"])
            pair.source.waitForOutput(timeout: 60, "a first sweep") { _ in Self.dirtySweeps(pair.sourceQMP) >= 1 }
            // A downtime only an empty pass meets: the passes run while the guest writes.
            #expect(pair.sourceQMP.execute(#"{"execute": "migrate-set-parameters", "arguments": {"downtime-limit": 0, "x-max-passes": 4}}"#) == #"{"return": {}}"#)
            #expect(pair.sourceQMP.execute(#"{"execute": "migrate", "arguments": {"uri": "\#(pair.uri)"}}"#) == #"{"return": {}}"#)
            let info = MigrationTests.waitForMigration(pair.sourceQMP, timeout: 300)
            #expect(info.contains(#""status": "completed""#), "\(info)")
            // Four at most; fewer only when a pass found nothing written at all (a guest that
            // sleeps between ticks can leave a short pass clean).
            #expect((2...4).contains(Self.number("x-passes", in: info) ?? 0), "\(info)")
            let sweepsAtSwitch = Self.dirtySweeps(pair.sourceQMP)
            // Two whole sweeps on the target: every page of the area checked at least once.
            pair.target.waitForOutput(timeout: 60, "two more sweeps") { _ in Self.dirtySweeps(pair.targetQMP) >= sweepsAtSwitch + 2 }
            MigrationTests.expectGuestContinued(from: pair.source, on: pair.target, targetClient: pair.targetQMP)
            #expect((BuiltinGuestDiskTests.status(pair.targetQMP)["corruptions"] as? NSNumber)?.intValue == 0)
            _ = pair.source.terminate()
            _ = pair.target.terminate()
        }

        @Test("a guest dirtying RAM faster than the link: auto-converge throttles it until it fits, and it finishes")
        func autoConverge() throws {
            // 256 MiB rewritten per second over a link held to 40 MB/s: without help it never fits.
            let pair = try Self.start(["-m", "256", "-builtin-guest", "fill=50,dirty=100", "-serial", "stdio"])
            pair.source.waitForOutput(timeout: 60, "tick 1100") { VMProcess.ticks(in: $0).last ?? 0 >= 1100 }
            #expect(pair.sourceQMP.execute(#"{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "auto-converge", "state": true}]}}"#) == #"{"return": {}}"#)
            #expect(pair.sourceQMP.execute(#"{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 40000000, "cpu-throttle-increment": 20}}"#) == #"{"return": {}}"#)
            #expect(pair.sourceQMP.execute(#"{"execute": "migrate", "arguments": {"uri": "\#(pair.uri)"}}"#) == #"{"return": {}}"#)
            let info = MigrationTests.waitForMigration(pair.sourceQMP, timeout: 300)
            #expect(info.contains(#""status": "completed""#), "\(info)")
            #expect((Self.number("cpu-throttle-percentage", in: info) ?? 0) > 0, "the throttle never engaged: \(info)")
            MigrationTests.expectGuestContinued(from: pair.source, on: pair.target, targetClient: pair.targetQMP)
            #expect((BuiltinGuestDiskTests.status(pair.targetQMP)["corruptions"] as? NSNumber)?.intValue == 0)
            _ = pair.source.terminate()
            _ = pair.target.terminate()
        }

        @Test("x-max-passes: a guest that never fits switches over after N passes, with a longer pause")
        func maxPasses() throws {
            let pair = try Self.start(["-m", "256", "-builtin-guest", "fill=50,dirty=100", "-serial", "stdio"])
            pair.source.waitForOutput(timeout: 60, "tick 1100") { VMProcess.ticks(in: $0).last ?? 0 >= 1100 }
            #expect(pair.sourceQMP.execute(#"{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 40000000, "x-max-passes": 3, "downtime-limit": 1}}"#) == #"{"return": {}}"#)
            #expect(pair.sourceQMP.execute(#"{"execute": "migrate", "arguments": {"uri": "\#(pair.uri)"}}"#) == #"{"return": {}}"#)
            let info = MigrationTests.waitForMigration(pair.sourceQMP, timeout: 300)
            #expect(info.contains(#""status": "completed""#), "\(info)")
            #expect(Self.number("x-passes", in: info) == 3, "\(info)")
            MigrationTests.expectGuestContinued(from: pair.source, on: pair.target, targetClient: pair.targetQMP)
            #expect((BuiltinGuestDiskTests.status(pair.targetQMP)["corruptions"] as? NSNumber)?.intValue == 0)
            _ = pair.source.terminate()
            _ = pair.target.terminate()
        }

        /// The first 4 KiB page where two processes' guest RAM (memfd pc.ram) differs, or nil.
        static func firstDifference(_ a: Int32, _ b: Int32) throws -> Int? {
            let pathA = try #require(memfdPath(pid: a, name: "pc.ram")), pathB = try #require(memfdPath(pid: b, name: "pc.ram"))
            let fileA = try FileHandle(forReadingFrom: URL(fileURLWithPath: pathA)), fileB = try FileHandle(forReadingFrom: URL(fileURLWithPath: pathB))
            var offset = 0
            while true {
                let chunkA = fileA.readData(ofLength: 4 << 20), chunkB = fileB.readData(ofLength: 4 << 20)
                guard chunkA == chunkB else {
                    let page = zip(chunkA, chunkB).enumerated().first { $0.element.0 != $0.element.1 }.map { $0.offset / 4096 } ?? chunkA.count / 4096
                    return offset / 4096 + page
                }
                if chunkA.isEmpty { return nil }
                offset += chunkA.count
            }
        }

        @Test("with a disk workload: the target's RAM is the source's, page for page, including what the device wrote")
        func diskWorkload() throws {
            // The image is on storage both "hosts" see (the same file system). Its virtio-blk
            // device writes guest RAM (read buffers, used rings) that the guest's own writes
            // do not cover: KVM's dirty log misses those, cprvmm's DeviceWrites must not.
            let disk = try BuiltinGuestDiskTests.makeDisk()
            defer { unlink(disk) }
            let arguments = ["-m", "256", "-machine", "memfd-alloc=on", "-builtin-guest", "fill=50", "-serial", "stdio",
                             "-drive", "file=\(disk),format=raw,if=virtio"]
            // The target stays paused after the migration (-S): both copies of RAM hold still.
            let pair = try Self.start(arguments, target: ["-S"])
            pair.source.waitForOutput(timeout: 60, "tick 1100") { VMProcess.ticks(in: $0).last ?? 0 >= 1100 }
            #expect(pair.sourceQMP.execute(#"{"execute": "migrate", "arguments": {"uri": "\#(pair.uri)"}}"#) == #"{"return": {}}"#)
            #expect(MigrationTests.waitForMigration(pair.sourceQMP, timeout: 120).contains(#""status": "completed""#))
            let opsBefore = (BuiltinGuestDiskTests.status(pair.sourceQMP)["disk-ops"] as? NSNumber)?.intValue ?? Int.max
            #expect(opsBefore > 100, "the disk workload ran on the source during the copy")
            pair.target.waitForOutput(timeout: 30, "the target loaded the state") { _ in
                pair.targetQMP.execute(#"{"execute": "query-status"}"#)?.contains(#""status": "paused""#) == true
            }
            let difference = try Self.firstDifference(pair.source.pid, pair.target.pid)
            #expect(difference == nil, "guest RAM differs at page \(difference.map { "0x" + String($0 * 4096, radix: 16) } ?? "")")
            #expect(pair.targetQMP.execute(#"{"execute": "cont"}"#) == #"{"return": {}}"#)
            MigrationTests.expectGuestContinued(from: pair.source, on: pair.target, targetClient: pair.targetQMP)
            let status = BuiltinGuestDiskTests.status(pair.targetQMP)
            #expect((status["disk-ops"] as? NSNumber)?.intValue ?? 0 > opsBefore + 100, "\(status)")
            #expect((status["disk-errors"] as? NSNumber)?.intValue == 0)
            #expect(!(pair.source.stdout + pair.target.stdout).contains("DISK CORRUPTION"))
            _ = pair.source.terminate()
            _ = pair.target.terminate()
            #expect(try BuiltinGuestDiskTests.expectImageConsistent(disk) > 10)
        }

        @Test("migrate_cancel mid-way: the source runs on with nothing lost, the target gives up")
        func cancelMidway() throws {
            let pair = try Self.start(["-m", "256", "-builtin-guest", "fill=50", "-serial", "stdio"])
            pair.source.waitForOutput(timeout: 60, "tick 500") { VMProcess.ticks(in: $0).last ?? 0 >= 500 }
            // 10 MB/s: the first pass takes ~13 s, time enough to cancel in it.
            #expect(pair.sourceQMP.execute(#"{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 10000000}}"#) == #"{"return": {}}"#)
            #expect(pair.sourceQMP.execute(#"{"execute": "migrate", "arguments": {"uri": "\#(pair.uri)"}}"#) == #"{"return": {}}"#)
            var info = ""
            let deadline = Date().addingTimeInterval(30)
            while (Self.number("transferred", in: info) ?? 0) < 5_000_000 && Date() < deadline {
                usleep(100_000)
                info = pair.sourceQMP.execute(#"{"execute": "query-migrate"}"#) ?? ""
            }
            #expect(info.contains(#""status": "active""#), "\(info)")
            #expect(pair.sourceQMP.execute(#"{"execute": "migrate_cancel"}"#) == #"{"return": {}}"#)
            let final = MigrationTests.waitForMigration(pair.sourceQMP, timeout: 30)
            #expect(final.contains(#""status": "cancelled""#), "\(final)")
            #expect(pair.sourceQMP.execute(#"{"execute": "query-status"}"#) == #"{"return": {"status": "running", "running": true}}"#)
            QMPTests.expectStillTicking(pair.source, "a cancelled live migration")
            #expect(!pair.source.stdout.contains("MEMORY CORRUPTION"))
            // As QEMU's: a target whose stream broke off ends, saying why.
            #expect(pair.target.waitForExit(timeout: 30) == 1)
            #expect(pair.target.stderr.contains("incoming migration from"), "\(pair.target.stderr)")
            _ = pair.source.terminate()
        }

        @Test("the target dies after it loaded the whole stream but before it confirmed: the source runs the guest on")
        func targetDiesBeforeConfirming() throws {
            // The target stops itself once loaded, before it tells the source
            // (CPRVMM_TEST_STOP_AT=incoming-loaded), and is killed there: every byte reached it
            // and the source still must not hand the guest over.
            let hosts = try HostPair()
            Self.nextPort += 1
            let uri = "tcp:\(HostPair.targetIP):\(Self.nextPort)"
            let arguments = [Binaries.cprvmm, "-m", "128", "-builtin-guest", "fill=50", "-serial", "stdio"]
            let targetSocket = temporarySocketPath("lmt"), sourceSocket = temporarySocketPath("lms")
            let target = try VMProcess(["netns", "exec", hosts.target.name] + arguments + ["-qmp", "unix:\(targetSocket),server=on,wait=off", "-incoming", uri],
                                       binary: NetNamespace.ip, environment: ["CPRVMM_TEST_STOP_AT": "incoming-loaded"])
            _ = try connectWhenListening(targetSocket)
            let source = try hosts.source.vm(arguments + ["-qmp", "unix:\(sourceSocket),server=on,wait=off"])
            let sourceQMP = try connectWhenListening(sourceSocket)
            source.waitForOutput(timeout: 60, "tick 500") { VMProcess.ticks(in: $0).last ?? 0 >= 500 }
            #expect(sourceQMP.execute(#"{"execute": "migrate", "arguments": {"uri": "\#(uri)"}}"#) == #"{"return": {}}"#)
            let stopped = target.waitForOutput(timeout: 60, "the target stopping once loaded") { _ in
                ((try? String(contentsOfFile: "/proc/\(target.pid)/stat", encoding: .utf8)) ?? "").split(separator: " ").dropFirst(2).first == "T"
            }
            #expect(stopped)
            kill(target.pid, SIGKILL)
            _ = target.waitForExit()
            let final = MigrationTests.waitForMigration(sourceQMP, timeout: 60)
            #expect(final.contains(#""status": "failed""#) && final.contains("without confirming"), "\(final)")
            #expect(sourceQMP.execute(#"{"execute": "query-status"}"#) == #"{"return": {"status": "running", "running": true}}"#)
            QMPTests.expectStillTicking(source, "a migration whose target died before confirming")
            #expect(!source.stdout.contains("MEMORY CORRUPTION"))
            _ = source.terminate()
        }

        @Test("the target killed mid-way: the source fails the migration, runs on, and a new target then takes it")
        func targetKilled() throws {
            let arguments = ["-m", "256", "-builtin-guest", "fill=50", "-serial", "stdio"]
            let pair = try Self.start(arguments)
            pair.source.waitForOutput(timeout: 60, "tick 500") { VMProcess.ticks(in: $0).last ?? 0 >= 500 }
            #expect(pair.sourceQMP.execute(#"{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 10000000}}"#) == #"{"return": {}}"#)
            #expect(pair.sourceQMP.execute(#"{"execute": "migrate", "arguments": {"uri": "\#(pair.uri)"}}"#) == #"{"return": {}}"#)
            pair.target.waitForOutput(timeout: 30, "the target receiving") { _ in
                (Self.number("transferred", in: pair.sourceQMP.execute(#"{"execute": "query-migrate"}"#) ?? "") ?? 0) > 5_000_000
            }
            kill(pair.target.pid, SIGKILL)
            _ = pair.target.waitForExit()
            let final = MigrationTests.waitForMigration(pair.sourceQMP, timeout: 60)
            #expect(final.contains(#""status": "failed""#), "\(final)")
            #expect(final.contains(#""error-desc""#), "\(final)")
            #expect(pair.sourceQMP.execute(#"{"execute": "query-status"}"#) == #"{"return": {"status": "running", "running": true}}"#)
            QMPTests.expectStillTicking(pair.source, "a migration whose target died")

            // A new target on the same address: the source migrates there (the dirty log starts afresh).
            let targetSocket = temporarySocketPath("lmt2")
            let target = try pair.hosts.target.vm([Binaries.cprvmm] + arguments + ["-qmp", "unix:\(targetSocket),server=on,wait=off", "-incoming", pair.uri])
            let targetQMP = try connectWhenListening(targetSocket)
            #expect(pair.sourceQMP.execute(#"{"execute": "migrate-set-parameters", "arguments": {"max-bandwidth": 0}}"#) == #"{"return": {}}"#)
            #expect(pair.sourceQMP.execute(#"{"execute": "migrate", "arguments": {"uri": "\#(pair.uri)"}}"#) == #"{"return": {}}"#)
            let second = MigrationTests.waitForMigration(pair.sourceQMP, timeout: 120)
            #expect(second.contains(#""status": "completed""#), "\(second)")
            MigrationTests.expectGuestContinued(from: pair.source, on: target)
            #expect(targetQMP.execute(#"{"execute": "query-status"}"#) == #"{"return": {"status": "running", "running": true}}"#)
            _ = pair.source.terminate()
            _ = target.terminate()
        }
    }
}
