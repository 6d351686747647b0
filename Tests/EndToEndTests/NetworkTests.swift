import Foundation
import Testing

/// A private network namespace with a TAP interface, made and removed by the test: the VM's
/// NIC and the host-side clients live there, never on the host's own network.
final class NetNamespace {
    static let ip = "/usr/sbin/ip"
    static let available = getuid() == 0 && FileManager.default.isExecutableFile(atPath: ip) && access("/dev/net/tun", R_OK | W_OK) == 0
    static let unavailableReason: Comment = "needs root, /dev/net/tun and ip (iproute2) for a private network namespace; skipped"
    /// Tests/Network/echo-client.py: ping and UDP echo with sequence numbers.
    static let client = Binaries.packageRoot.appendingPathComponent("Tests/Network/echo-client.py").path
    static let guestIP = "10.0.2.15"
    nonisolated(unsafe) private static var counter = 0

    let name: String

    /// A namespace whose tap0 (10.0.2.2/24) exists, or not when `tap` is false (a test that
    /// opens it itself).
    init(tap: Bool = true) throws {
        NetNamespace.removeLeftovers
        NetNamespace.counter += 1
        name = "cprvmm-t\(getpid())-\(NetNamespace.counter)"
        try Self.ip(["netns", "add", name])
        try Self.ip(["-n", name, "link", "set", "lo", "up"])
        if tap { try addTap() }
    }

    /// Namespaces an earlier test process left behind (it died before removing them): its PID
    /// is in the name, and no process has it any more.
    static let removeLeftovers: Void = {
        guard let list = try? runTool(ip, ["netns", "list"]) else { return }
        for line in list.output.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix("cprvmm-t"), let pid = Int32(name.dropFirst(8).split(separator: "-").first ?? ""),
                  pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { continue }
            _ = try? runTool(ip, ["netns", "del", name])
        }
    }()

    func addTap() throws {
        try Self.ip(["-n", name, "tuntap", "add", "dev", "tap0", "mode", "tap"])
        try Self.ip(["-n", name, "addr", "add", "10.0.2.2/24", "dev", "tap0"])
        try Self.ip(["-n", name, "link", "set", "tap0", "up"])
    }

    deinit { _ = try? runTool(NetNamespace.ip, ["netns", "del", name]) }

    private static func ip(_ arguments: [String]) throws {
        let result = try runTool(ip, arguments)
        guard result.status == 0 else { throw ConfigurationFailure("ip \(arguments.joined(separator: " ")): \(result.output)") }
    }

    /// Runs `command` inside the namespace.
    func run(_ command: [String], timeout: Double = 120) throws -> (status: Int32, output: String) {
        try runTool(NetNamespace.ip, ["netns", "exec", name] + command, timeout: timeout)
    }

    /// A cprvmm started inside the namespace (ip netns exec keeps the PID: it execs).
    func vm(_ arguments: [String]) throws -> VMProcess {
        try VMProcess(["netns", "exec", name] + arguments, binary: NetNamespace.ip)
    }

    /// The UDP echo client's JSON summary.
    func udp(rate: Int, seconds: Double, stop: String? = nil) throws -> [String: Any] {
        let result = try run(["python3", NetNamespace.client, "udp", NetNamespace.guestIP, "\(rate)", "\(seconds)"] + (stop.map { [$0] } ?? []), timeout: seconds + 600)
        let line = result.output.split(separator: "\n").last.map(String.init) ?? ""
        return (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]) ?? ["error": result.output]
    }
}

struct ConfigurationFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension VirtualMachines {
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason), .enabled(if: NetNamespace.available, NetNamespace.unavailableReason))
    struct NetworkTests {
        static let nic = ["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no", "-device", "virtio-net-pci,netdev=n0,id=nic0"]

        /// The built-in guest with a NIC in `namespace`, its responder ready.
        static func start(_ namespace: NetNamespace, nic: [String] = NetworkTests.nic, binary: String = Binaries.cprvmm) throws -> LiveUpdateTests.VM {
            let qmp = temporarySocketPath("net")
            let arguments = LiveUpdateTests.options + nic + ["-qmp", "unix:\(qmp),server=on,wait=off"]
            let process = try namespace.vm([binary] + arguments)
            _ = try connectWhenListening(qmp)
            #expect(process.waitForOutput("net: virtio-net ready") { $0.contains("net: virtio-net ready, answering ARP, ICMP echo and UDP echo (port 7) at 10.0.2.15\n") },
                    "the responder did not start: \(process.stdout.suffix(400)) \(process.stderr.suffix(400))")
            return LiveUpdateTests.VM(process: process, qmp: qmp, state: "", arguments: arguments)
        }

        static func nicStatus(_ vm: LiveUpdateTests.VM) -> [String: Any] {
            let client = try? connectWhenListening(vm.qmp)
            let reply = client?.execute(#"{"execute": "x-query-nics"}"#) ?? ""
            let object = (try? JSONSerialization.jsonObject(with: Data(reply.utf8))) as? [String: Any]
            return (object?["return"] as? [[String: Any]])?.first ?? [:]
        }

        static func int(_ value: Any?) -> Int { (value as? NSNumber)?.intValue ?? -1 }

        @Test("the built-in guest answers ARP, ping and UDP echo from the host side; info network shows the NIC")
        func answers() throws {
            let namespace = try NetNamespace()
            let vm = try Self.start(namespace)
            defer { _ = vm.process.terminate() }
            let ping = try namespace.run(["python3", NetNamespace.client, "ping", NetNamespace.guestIP, "3"])
            #expect(ping.output.contains(#"{"sent": 3, "received": 3}"#), "\(ping.output)")
            let udp = try namespace.udp(rate: 200, seconds: 1)
            #expect(Self.int(udp["sent"]) > 100 && Self.int(udp["lost"]) == 0 && Self.int(udp["duplicated"]) == 0, "\(udp)")
            let neighbour = try namespace.run([NetNamespace.ip, "neigh", "show", NetNamespace.guestIP])
            #expect(neighbour.output.contains("lladdr 52:54:00:12:34:56"), "ARP resolved the guest's MAC: \(neighbour.output)")
            let client = try connectWhenListening(vm.qmp)
            let info = client.execute(#"{"execute": "human-monitor-command", "arguments": {"command-line": "info network"}}"#) ?? ""
            #expect(info.contains("nic0: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:00:12:34:56"), "\(info)")
            #expect(info.contains("n0: index=0,type=tap,ifname=tap0,vnet_hdr=on"), "\(info)")
            let nic = Self.nicStatus(vm)
            #expect(Self.int(nic["rx-packets"]) >= 200 && Self.int(nic["tx-packets"]) >= 200, "\(nic)")
            let cprctl = Binaries.directory.appendingPathComponent("cprctl").path
            let status = try runTool(cprctl, ["status", "--socket", vm.qmp])
            #expect(status.output.contains("NICs:         nic0 virtio-net-pci 52:54:00:12:34:56, tap tap0 (netdev n0), link up, rx "), "\(status.output)")
            let pci = client.execute(#"{"execute": "query-pci"}"#) ?? ""
            #expect(pci.contains(#""qdev_id": "nic0""#) && pci.contains("Ethernet controller"), "\(pci)")
        }

        @Test("UDP echo at 1000 datagrams/s across 50 live updates: none lost, duplicated or reordered")
        func echoAcrossLiveUpdates() throws {
            let namespace = try NetNamespace()
            let vm = try Self.start(namespace)
            defer { _ = vm.process.terminate() }
            let stop = FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-net-stop-\(UUID().uuidString)").path
            defer { unlink(stop) }
            final class Box: @unchecked Sendable { var summary: [String: Any] = [:] }
            let box = Box()
            let done = DispatchSemaphore(value: 0)
            Thread.detachNewThread {
                box.summary = (try? namespace.udp(rate: 1000, seconds: 600, stop: stop)) ?? [:]
                done.signal()
            }
            usleep(500_000)
            let binaries = [LiveUpdateTests.nextBinary ?? Binaries.cprvmm, Binaries.cprvmm]
            for update in 0..<50 {
                try LiveUpdateTests.update(vm, to: binaries[update % 2], uri: "memfd:")
                usleep(100_000)
            }
            usleep(500_000)
            FileManager.default.createFile(atPath: stop, contents: nil)
            #expect(done.wait(timeout: .now() + 60) == .success)
            let summary = box.summary
            print("network across 50 live updates: \(summary)")
            #expect(Self.int(summary["sent"]) > 2000, "\(summary)")
            #expect(Self.int(summary["lost"]) == 0, "lost datagrams: \(summary)")
            #expect(Self.int(summary["duplicated"]) == 0 && Self.int(summary["reordered"]) == 0, "\(summary)")
            LiveUpdateTests.expectGuestIntact(vm)
            let guest = try LiveUpdateTests.query(vm)["builtin-guest"] as? [String: Any] ?? [:]
            #expect(Self.int(guest["net-malformed"]) == 0, "\(guest)")
        }

        /// Runs the UDP client at 1000/s in the background while `during` runs; its summary.
        static func echoing(_ namespace: NetNamespace, during: () throws -> Void) rethrows -> [String: Any] {
            let stop = FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-net-stop-\(UUID().uuidString)").path
            defer { unlink(stop) }
            final class Box: @unchecked Sendable { var summary: [String: Any] = [:] }
            let box = Box()
            let done = DispatchSemaphore(value: 0)
            Thread.detachNewThread {
                box.summary = (try? namespace.udp(rate: 1000, seconds: 600, stop: stop)) ?? [:]
                done.signal()
            }
            usleep(500_000)
            try during()
            usleep(500_000)
            FileManager.default.createFile(atPath: stop, contents: nil)
            #expect(done.wait(timeout: .now() + 60) == .success)
            return box.summary
        }

        @Test("a live update that rolls back loses no datagram either")
        func rollback() throws {
            let namespace = try NetNamespace()
            let vm = try Self.start(namespace)
            defer { _ = vm.process.terminate() }
            let summary = try Self.echoing(namespace) {
                let failure = try LiveUpdateTests.updateFailure(
                    vm, command: ["/usr/bin/env", "CPRVMM_INJECT_LOAD_FAILURE=1", LiveUpdateTests.nextBinary ?? Binaries.cprvmm] + vm.arguments, uri: "memfd:")
                #expect(failure.contains("load failure injected"), "\(failure)")
            }
            print("network across a rollback: \(summary)")
            #expect(Self.int(summary["sent"]) > 500 && Self.int(summary["lost"]) == 0 && Self.int(summary["duplicated"]) == 0, "\(summary)")
            #expect(vm.process.stderr.contains("rolling back to"))
        }

        @Test("cpr-reboot: RAM stays in its file, the tap is reopened by name, the guest answers again")
        func cprReboot() throws {
            let namespace = try NetNamespace()
            let ram = "/dev/shm/cprvmm-net-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            let state = FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-net-\(UUID().uuidString)").path
            defer { unlink(ram); unlink(state) }
            let memory = ["-m", "64", "-object", "memory-backend-file,id=ram0,size=64M,mem-path=\(ram),share=on", "-machine", "memory-backend=ram0"]
            let arguments = memory + ["-builtin-guest", "fill=50"] + Self.nic
            let qmp = temporarySocketPath("net")
            let source = try namespace.vm([Binaries.cprvmm] + arguments + ["-qmp", "unix:\(qmp),server=on,wait=off"])
            let client = try connectWhenListening(qmp)
            #expect(source.waitForOutput("net: virtio-net ready") { $0.contains("net: virtio-net ready") })
            let before = try namespace.udp(rate: 200, seconds: 1)
            _ = client.execute(#"{"execute": "migrate-set-parameters", "arguments": {"mode": "cpr-reboot"}}"#)
            #expect(client.execute(#"{"execute": "migrate", "arguments": {"uri": "file:\#(state)"}}"#) == #"{"return": {}}"#)
            #expect(MigrationTests.waitForMigration(client).contains(#""status": "completed""#))
            _ = client.execute(#"{"execute": "quit"}"#)
            #expect(source.waitForExit() == 0)
            let targetQMP = temporarySocketPath("net")
            let target = try namespace.vm([Binaries.cprvmm] + arguments + ["-incoming", "file:\(state)", "-qmp", "unix:\(targetQMP),server=on,wait=off"])
            defer { _ = target.terminate() }
            _ = try connectWhenListening(targetQMP)
            MigrationTests.expectGuestContinued(from: source, on: target)
            let after = try namespace.udp(rate: 200, seconds: 1)
            #expect(Self.int(before["lost"]) == 0 && Self.int(after["lost"]) == 0 && Self.int(after["received"]) > 100, "before \(before), after \(after)")
            #expect(!target.stdout.contains("net: virtio-net ready"), "the guest's driver went on; it did not start over")
        }

        @Test("a guest that writes garbage into its NIC while frames pour in breaks only its NIC: cprvmm serves QMP, saves and loads the device in a live update")
        func garbageIntoTheNIC() throws {
            // Tests/Guests/virtio-chaos-kernel.S attacks whatever virtio device sits at 00:02.0.
            let kernel = try GuestBuilder.kernel("virtio-chaos-kernel")
            let namespace = try NetNamespace()
            _ = try namespace.run([NetNamespace.ip, "neigh", "add", NetNamespace.guestIP, "lladdr", "52:54:00:12:34:56", "dev", "tap0"])
            let qmp = temporarySocketPath("netchaos")
            let arguments = ["-kernel", kernel, "-m", "64", "-machine", "memfd-alloc=on", "-serial", "stdio"] + Self.nic
                + ["-qmp", "unix:\(qmp),server=on,wait=off"]
            let process = try namespace.vm([Binaries.cprvmm] + arguments)
            defer { _ = process.terminate() }
            let vm = LiveUpdateTests.VM(process: process, qmp: qmp, state: "", arguments: arguments)
            _ = try connectWhenListening(qmp)
            let dots = { (text: String) in text.filter { $0 == "." }.count }
            let started = Date()
            let summary = try Self.echoing(namespace) {
                #expect(process.waitForOutput(timeout: 60, "4 dots") { dots($0) >= 4 }, "\(process.stderr.suffix(1500))")
                #expect(try LiveUpdateTests.query(vm, "query-status")["status"] as? String == "running")
                try LiveUpdateTests.update(vm, to: Binaries.cprvmm, uri: "memfd:")
                let before = dots(process.stdout)
                #expect(process.waitForOutput(timeout: 60, "more dots") { dots($0) >= before + 2 }, "the guest stopped after the update")
            }
            #expect(process.process.isRunning)
            #expect(Self.int(summary["sent"]) > 1000, "frames were offered all along: \(summary)")
            let nic = Self.nicStatus(vm)
            #expect(nic["id"] as? String == "nic0", "x-query-nics still answers: \(nic)")
            let log = process.stderr
            #expect(log.contains("virtio-net nic0"), "the NIC complained: \(log.suffix(1500))")
            // Each source of complaints is rate-limited: a few dozen lines a second in all.
            let lines = log.split(separator: "\n")
            let seconds = Date().timeIntervalSince(started)
            #expect(Double(lines.count) < 60 * (seconds + 2), "\(lines.count) log lines in \(Int(seconds)) s")
            #expect(lines.contains { $0.contains("similar messages suppressed") })
        }

        @Test("a driver with MRG_RXBUF, CSUM, GUEST_CSUM and TSO4, as Linux negotiates: partial checksums cross the tap both ways and every datagram comes back",
              arguments: [128, 64])
        func offloads(ramMegabytes: Int) throws {
            // 128 MiB: 64 receive buffers, room for the largest frame (straight into them);
            // 64 MiB: 16, less room than that (each frame taken in, then copied).
            // Tests/Guests/net-offload-kernel.S reflects UDP with the virtio-net header untouched.
            let kernel = try GuestBuilder.kernel("net-offload-kernel")
            let namespace = try NetNamespace()
            _ = try namespace.run([NetNamespace.ip, "neigh", "add", NetNamespace.guestIP, "lladdr", "52:54:00:12:34:56", "dev", "tap0"])
            let qmp = temporarySocketPath("netoffload")
            let arguments = ["-kernel", kernel, "-m", "\(ramMegabytes)", "-machine", "memfd-alloc=on", "-serial", "stdio"] + Self.nic + ["-qmp", "unix:\(qmp),server=on,wait=off"]
            let process = try namespace.vm([Binaries.cprvmm] + arguments)
            defer { _ = process.terminate() }
            _ = try connectWhenListening(qmp)
            #expect(process.waitForOutput("R") { $0.contains("R") }, "\(process.stdout) \(process.stderr.suffix(800))")
            var udp = try namespace.udp(rate: 500, seconds: 1)
            // And across a live update: a frame waiting for room is saved with the device.
            let vm = LiveUpdateTests.VM(process: process, qmp: qmp, state: "", arguments: arguments)
            let during = try Self.echoing(namespace) { try LiveUpdateTests.update(vm, to: LiveUpdateTests.nextBinary ?? Binaries.cprvmm, uri: "memfd:") }
            #expect(Self.int(during["lost"]) == 0 && Self.int(during["sent"]) > 500, "across the update: \(during)")
            udp["lost"] = Self.int(udp["lost"]) + Self.int(during["lost"])
            #expect(Self.int(udp["received"]) > 300 && Self.int(udp["lost"]) == 0, "\(udp); guest: \(process.stdout.suffix(200))")
            #expect(process.stdout.contains("C"), "no frame arrived with a partial checksum (NEEDS_CSUM): the tap's offload was not set")
            #expect(!process.stdout.contains("M") && !process.stdout.contains("X"), "\(process.stdout.suffix(200))")
            let nic = Self.nicStatus(vm)
            #expect(Self.int(nic["tx-dropped"]) == 0 && Self.int(nic["tx-packets"]) > 300, "\(nic)")
        }

        static let ipxeROM = "/usr/lib/ipxe/qemu/efi-virtio.rom"

        @Test("romfile=: SeaBIOS runs iPXE's virtio option ROM from the NIC's ROM BAR, which registers its boot entry; the VM then live-updates with its ROM",
              .enabled(if: Host.seabiosAvailable && access(NetworkTests.ipxeROM, R_OK) == 0, "needs SeaBIOS and \(NetworkTests.ipxeROM) (apt-get install seabios ipxe-qemu); skipped"))
        func optionROM() throws {
            let namespace = try NetNamespace()
            let log = FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-rom-\(UUID().uuidString).log").path
            defer { unlink(log) }
            let qmp = temporarySocketPath("netrom")
            let arguments = ["-m", "128", "-machine", "memfd-alloc=on", "-bios", Host.seabios, "-debugcon", "file:\(log)", "-serial", "null",
                             "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
                             "-device", "virtio-net-pci,netdev=n0,id=nic0,romfile=\(Self.ipxeROM)", "-qmp", "unix:\(qmp),server=on,wait=off"]
            let process = try namespace.vm([Binaries.cprvmm] + arguments)
            defer { _ = process.terminate() }
            _ = try connectWhenListening(qmp)
            let firmware = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
            let deadline = Date().addingTimeInterval(60)
            while !firmware().contains("Booting from ROM"), Date() < deadline { usleep(50_000) }
            #expect(firmware().contains("Running option rom at c"), "SeaBIOS did not run the ROM: \(firmware().suffix(800))")
            #expect(firmware().contains("Booting from ROM"), "iPXE registered no boot entry: \(firmware().suffix(800))")
            let vm = LiveUpdateTests.VM(process: process, qmp: qmp, state: "", arguments: arguments)
            try LiveUpdateTests.update(vm, to: Binaries.cprvmm, uri: "memfd:")
            #expect(process.process.isRunning)
        }

        @Test("romfile= naming a file that is not an option ROM is refused by name")
        func notAnOptionROM() throws {
            let namespace = try NetNamespace()
            let bad = try namespace.run([Binaries.cprvmm, "-m", "32", "-netdev", "tap,id=n0,ifname=tap0", "-device", "virtio-net-pci,netdev=n0,romfile=/etc/hostname"])
            #expect(bad.status == 1 && bad.output.contains("romfile=/etc/hostname: not a PCI option ROM (it does not start with 55 aa); use romfile= for none"), "\(bad.output)")
        }

        @Test("set_link off: the guest sees the link down and goes quiet; on: it answers again")
        func setLink() throws {
            let namespace = try NetNamespace()
            let vm = try Self.start(namespace)
            defer { _ = vm.process.terminate() }
            let client = try connectWhenListening(vm.qmp)
            #expect(client.execute(#"{"execute": "set_link", "arguments": {"name": "nic0", "up": false}}"#) == #"{"return": {}}"#)
            #expect(vm.process.waitForOutput("net: link down") { $0.contains("net: link down\n") })
            let quiet = try namespace.udp(rate: 100, seconds: 1)
            #expect(Self.int(quiet["received"]) == 0, "no answer while the link is down: \(quiet)")
            #expect(client.execute(#"{"execute": "set_link", "arguments": {"name": "n0", "up": true}}"#) == #"{"return": {}}"#)
            #expect(vm.process.waitForOutput("net: link up") { $0.contains("net: link up\n") })
            let again = try namespace.udp(rate: 100, seconds: 1)
            #expect(Self.int(again["lost"]) == 0 && Self.int(again["received"]) > 50, "\(again)")
            #expect(client.execute(#"{"execute": "set_link", "arguments": {"name": "nope", "up": true}}"#)?.contains("DeviceNotFound") == true)
        }

        @Test("a tap passed in as fd=, as libvirt does")
        func tapPassedAsFD() throws {
            let namespace = try NetNamespace(tap: false)
            // Opens tap0 with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and execs cprvmm with it.
            let opener = """
                import fcntl, os, struct, sys
                fd = os.open("/dev/net/tun", os.O_RDWR)
                fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", b"tap0", 0x0002 | 0x1000 | 0x4000))
                os.set_inheritable(fd, True)
                os.system("ip addr add 10.0.2.2/24 dev tap0 && ip link set tap0 up")
                args = [a.replace("@FD@", str(fd)) for a in sys.argv[1:]]
                os.execv(args[0], args)
                """
            let qmp = temporarySocketPath("netfd")
            let arguments = LiveUpdateTests.options + ["-nic", "tap,id=n0,fd=@FD@", "-qmp", "unix:\(qmp),server=on,wait=off"]
            let process = try namespace.vm(["python3", "-c", opener, Binaries.cprvmm] + arguments)
            defer { _ = process.terminate() }
            _ = try connectWhenListening(qmp)
            #expect(process.waitForOutput("net: virtio-net ready") { $0.contains("net: virtio-net ready") }, "\(process.stderr.suffix(400))")
            let udp = try namespace.udp(rate: 200, seconds: 1)
            #expect(Self.int(udp["received"]) > 100 && Self.int(udp["lost"]) == 0, "\(udp)")
            let vm = LiveUpdateTests.VM(process: process, qmp: qmp, state: "", arguments: arguments)
            let backend = Self.nicStatus(vm)["backend"] as? [String: Any] ?? [:]
            #expect(backend["ifname"] as? String == "tap0" && Self.int(backend["fd"]) > 2, "\(backend)")
        }
    }
}
