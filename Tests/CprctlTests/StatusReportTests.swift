import Shared
import Testing

@testable import cprctl

@Suite struct StatusReportTests {
    static let imageStarted = 1795786801.123  // 2026-11-27 13:40:01 UTC

    static var status: JSONValue {
        [
            "name": "web1", "status": "running", "running": true, "pid": 1234,
            "binary": "/usr/local/bin/cprvmm", "version": "0.1.0", "build-id": "0123456789abcdef0123456789abcdef01234567",
            "image-started": .double(imageStarted), "vm-started": .double(imageStarted - 7200),
            "vm-uptime-ms": 7_503_000, "vcpus": 2,
            "memory": [
                ["id": "pc.ram", "size": 1_073_741_824, "backing": "memfd", "shared": true],
                ["id": "ram1", "size": 536_870_912, "backing": "file", "shared": true, "path": "/dev/shm/x"],
            ],
            "sockets": ["qmp": ["/run/cprvmm/web1/qmp.sock"], "hmp": [], "serial": nil],
            "update-generation": 3,
        ]
    }

    @Test func humanReport() {
        let expected = """
            web1: running
              PID:          1234
              Binary:       /usr/local/bin/cprvmm
              Version:      0.1.0 (build id 0123456789abcdef0123456789abcdef01234567)
              Image start:  2026-11-27 13:40:01 UTC (5min 3s ago)
              VM uptime:    2h 5min
              Updates:      3
              vCPUs:        2
              RAM:          pc.ram 1 GiB memfd, shared
                            ram1 512 MiB file /dev/shm/x, shared
              QMP socket:   /run/cprvmm/web1/qmp.sock
              HMP socket:   (none)
              Console:      (none)
            """
        #expect(StatusReport.format(Self.status, now: Self.imageStarted + 303.5) == expected)
    }

    @Test func nicsAreListed() {
        var status = Self.status
        if case .object(var object) = status {
            object["nics"] = [
                ["id": "nic0", "model": "virtio-net-pci", "mac": "52:54:00:12:34:56", "link-up": true,
                 "backend": ["type": "tap", "id": "n0", "ifname": "tap0", "vnet-hdr": true],
                 "rx-packets": 120, "rx-dropped": 1, "tx-packets": 118, "tx-dropped": 0],
                ["id": "nic1", "model": "virtio-net-pci", "mac": "52:54:00:12:34:57", "link-up": false,
                 "backend": ["type": "tap", "id": "n1", "ifname": "tap1"]],
            ]
            status = .object(object)
        }
        let report = StatusReport.format(status, now: Self.imageStarted)
        #expect(report.hasSuffix("""
              NICs:         nic0 virtio-net-pci 52:54:00:12:34:56, tap tap0 (netdev n0), link up, rx 120 packets (1 dropped), tx 118 packets (0 dropped)
                            nic1 virtio-net-pci 52:54:00:12:34:57, tap tap1 (netdev n1), link down, rx ? packets (? dropped), tx ? packets (? dropped)
            """), "\(report)")
    }

    @Test("the outgoing migration under way, or the last one, has a line after the updates")
    func migrationLine() throws {
        var object = Self.status.objectValue!
        object["migration"] = MigrationProgressTests.thirdPass
        let lines = StatusReport.format(.object(object), now: Self.imageStarted).split(separator: "\n").map(String.init)
        let updates = try #require(lines.firstIndex { $0.hasPrefix("  Updates:") })
        #expect(lines[updates + 1] == "  Migration:    active, pass 3, 90% of 1 GiB, 1300 MiB sent, expected downtime 120 ms, throttle 20%")
        object["migration"] = MigrationProgressTests.completed
        #expect(StatusReport.format(.object(object), now: Self.imageStarted).contains("\n  Migration:    completed in 5.1 s, downtime 4 ms, 537 MiB sent\n"))
        // No migration since the VMM started: query-migrate says {} and status adds nothing.
        object["migration"] = nil
        #expect(!StatusReport.format(.object(object), now: Self.imageStarted).contains("Migration"))
    }

    @Test func unnamedPausedVMWithSeveralSocketsAndAConsole() {
        var object = Self.status.objectValue!
        object["name"] = nil
        object["status"] = "paused"
        object["running"] = false
        object["memory"] = [["id": "ram0", "size": 65536, "backing": "anonymous", "shared": false]]
        object["sockets"] = [
            "qmp": ["/run/cprvmm/x/qmp.sock", "/tmp/extra.qmp"], "hmp": ["/tmp/hmp.sock"], "serial": "/tmp/console.sock",
        ]
        let report = StatusReport.format(.object(object), now: Self.imageStarted + 0.85)
        let lines = report.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines[0] == "(unnamed VM): paused")
        #expect(lines[4] == "  Image start:  2026-11-27 13:40:01 UTC (850ms ago)")
        #expect(
            Array(lines[8...]) == [
                "  RAM:          ram0 64 KiB anonymous, private",
                "  QMP socket:   /run/cprvmm/x/qmp.sock",
                "                /tmp/extra.qmp",
                "  HMP socket:   /tmp/hmp.sock",
                "  Console:      /tmp/console.sock",
            ])
    }

    @Test func unnamedVMWithJSONNullName() {
        var object = Self.status.objectValue!
        object["name"] = nil
        #expect(StatusReport.format(.object(object), now: Self.imageStarted).hasPrefix("(unnamed VM): running\n"))
        object["name"] = .null
        #expect(StatusReport.format(.object(object), now: Self.imageStarted).hasPrefix("(unnamed VM): running\n"))
    }

    @Test func missingFieldsPrintAsUnknown() {
        let expected = """
            vm: (unknown)
              PID:          (unknown)
              Binary:       (unknown)
              Version:      (unknown)
              Image start:  (unknown)
              VM uptime:    (unknown)
              Updates:      (unknown)
              vCPUs:        (unknown)
              RAM:          (unknown)
              QMP socket:   (unknown)
              HMP socket:   (unknown)
              Console:      (unknown)
            """
        #expect(StatusReport.format(["name": "vm"], now: 0) == expected)
    }

    @Test func imageStartInTheFutureHasNoAge() {
        #expect(StatusReport.timeAndAge(Self.imageStarted, now: Self.imageStarted - 10) == "2026-11-27 13:40:01 UTC")
        #expect(StatusReport.timeAndAge(nil, now: 0) == "(unknown)")
        #expect(StatusReport.timeAndAge(Self.imageStarted, now: Self.imageStarted + 273_600) == "2026-11-27 13:40:01 UTC (3d 4h ago)")
    }

    @Test func memoryLines() {
        #expect(
            StatusReport.memoryLine(["id": "pc.ram", "size": 1_073_741_824, "backing": "memfd", "shared": true])
                == "pc.ram 1 GiB memfd, shared")
        #expect(StatusReport.memoryLine(["id": "r", "size": 2048, "backing": "file", "path": "/dev/shm/r"]) == "r 2 KiB file /dev/shm/r")
        #expect(StatusReport.memoryLine([:]) == "? unknown backing")
    }
}
