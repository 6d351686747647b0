import CGuest
import Shared

/// `-device virtio-net-pci` (or `-nic tap`) as a machine device: a virtio-net model on a
/// virtio-pci transport at a PCI slot, with its tap. Its state section holds the PCI config
/// space, the negotiated features, the queues' addresses and indexes, the MSI-X table, the
/// receive filter and the link; the frames themselves are in guest RAM (queued by the guest)
/// or in the tap (queued by the host), never in cprvmm, so a live update loses none: the tap
/// fd crosses the exec, and frames that arrive meanwhile wait in it.
final class VirtioNetDevice: Device {
    static let sectionVersion: UInt32 = 1
    static let sectionKind = "virtio-net"

    let config: VirtioNetConfig
    let tap: TapBackend
    let net: VirtioNet
    let transport: VirtioPciTransport
    private let bus: PciBus

    init(_ config: VirtioNetConfig, bus: PciBus, memory: GuestMemory, inheritedTap: Int32?) throws {
        self.config = config
        self.bus = bus
        tap = try TapBackend(config.netdev, inherited: inheritedTap)
        let name = "virtio-net \(config.id) (00:\(PciBus.hex(config.slot)).0)"
        net = VirtioNet(tap: tap, mac: config.mac, name: name)
        let rom = try config.romFile.map { try OptionROM(path: $0) }
        transport = try VirtioPciTransport(name: name, qdevID: config.id, model: net, memory: memory, rom: rom)
        net.transport = transport
        net.watchTap = { [unowned transport, tap] on in transport.worker.watch(tap.fd, on) }
        try transport.worker.addWatched(tap.fd)
        try bus.add(transport, slot: config.slot)
    }

    static func handoverName(_ netdev: String) -> String { "netdev-" + netdev }

    var id: String { config.id }
    /// The MAC and whether the tap carries headers shape what the guest negotiated.
    var topology: String {
        "virtio-net-pci addr=\(PciBus.hex(config.slot)).0 netdev=\(config.netdev.id) mac=\(VirtioNetConfig.describe(config.mac)) vnet_hdr=\(tap.vnetHeader ? "on" : "off")"
            + (transport.rom.map { " rom=\($0.identity)" } ?? "")
    }

    func attach(to buses: Buses) throws {
        try transport.worker.start()
    }

    var stateSection: (name: String, version: UInt32)? { ("\(VirtioNetDevice.sectionKind).\(config.id)", VirtioNetDevice.sectionVersion) }

    func saveState() throws -> [UInt8] {
        var encoder = StateEncoder()
        transport.encodeSection(into: &encoder, bus: bus)
        net.lock.withLock {
            encoder.bool(net.linkUp)
            encoder.lengthPrefixedBytes(net.filter.mac)
            encoder.bool(net.filter.promiscuous)
            encoder.bool(net.filter.allMulticast)
            for table in [net.filter.unicast, net.filter.multicast] { encoder.lengthPrefixedBytes(table.flatMap { $0 }) }
        }
        // Quiesced: the device thread does not touch it now.
        encoder.lengthPrefixedBytes(net.pendingFrame ?? [])
        return encoder.bytes
    }

    func loadState(_ section: StateSection) throws {
        var decoder = StateDecoder(section.payload, section: section.name)
        try transport.decodeSection(from: &decoder, bus: bus, section: section.name)
        let linkUp = try decoder.bool()
        var filter = ReceiveFilter(mac: try decoder.lengthPrefixedBytes(limit: 6))
        guard filter.mac.count == 6 else { throw StateFormatError.malformed("section '\(section.name)': a MAC of \(filter.mac.count) bytes") }
        filter.promiscuous = try decoder.bool()
        filter.allMulticast = try decoder.bool()
        var tables: [[[UInt8]]] = []
        for _ in 0..<2 {
            let bytes = try decoder.lengthPrefixedBytes(limit: 6 * ReceiveFilter.maxTableEntries)
            guard bytes.count % 6 == 0 else { throw StateFormatError.malformed("section '\(section.name)': a MAC table of \(bytes.count) bytes") }
            tables.append(stride(from: 0, to: bytes.count, by: 6).map { Array(bytes[$0..<$0 + 6]) })
        }
        filter.unicast = tables[0]
        filter.multicast = tables[1]
        let pending = try decoder.lengthPrefixedBytes(limit: VirtioNet.maxSegmentedFrame)
        guard pending.isEmpty || pending.count >= TapBackend.headerSize + 14 else {
            throw StateFormatError.malformed("section '\(section.name)': a pending frame of \(pending.count) bytes")
        }
        net.pendingFrame = pending.isEmpty ? nil : pending
        try decoder.finish()
        net.lock.withLock {
            net.linkUp = linkUp
            net.filter = filter
        }
        transport.stateLoaded(bus: bus)
        // A tap reopened by name (cpr-reboot) forgot the offloads the driver accepted.
        let registers = transport.lock.withLock { transport.registers }
        if registers.driverReady { net.driverStarted(features: registers.driverFeatures) }
    }

    /// Places the BARs for the built-in guest (which polls: no MSI-X).
    func placeForBuiltinGuest() {
        transport.placeForBuiltinGuest(bus: bus, bar4: UInt32(GUEST_NET_BAR4), bar1: UInt32(GUEST_NET_BAR1), msix: false)
    }

    var handoverFDs: [(name: String, fd: Int32)] { [(VirtioNetDevice.handoverName(config.netdev.id), tap.fd)] }
    /// The tap goes to the fd store too: a process restarted after a crash keeps the very
    /// interface, with the frames queued in it.
    var storedFDs: [(name: String, fd: Int32)] { handoverFDs }

    func quiesce() { transport.worker.quiesce() }
    func resume() { transport.worker.resume() }
}
