import CGuest
import Shared

/// `-device virtio-blk-pci` (or `-drive if=virtio`) as a machine device: a virtio-blk model on
/// a virtio-pci transport at a PCI slot, with its image file. Its state section holds the
/// PCI config space, the negotiated features, the queues' addresses and indexes and the
/// MSI-X table; the requests themselves live in guest RAM. A quiesce finishes the request
/// being served, so no request is ever in flight across a save: each one the guest queued
/// is completed exactly once, here or by the next image.
final class VirtioBlockDevice: Device {
    static let sectionVersion: UInt32 = 1
    static let sectionKind = "virtio-blk"

    let config: VirtioBlockConfig
    let slot: UInt8
    let image: BlockImage
    let block: VirtioBlock
    let transport: VirtioPciTransport
    private let bus: PciBus

    init(_ config: VirtioBlockConfig, slot: UInt8, bus: PciBus, memory: GuestMemory, inheritedImage: Int32?) throws {
        self.config = config
        self.slot = slot
        self.bus = bus
        image = try BlockImage(config.drive, inherited: inheritedImage)
        block = VirtioBlock(image: image, serial: config.drive.id)
        transport = try VirtioPciTransport(name: "virtio-blk \(config.id) (00:\(PciBus.hex(slot)).0)", qdevID: config.id, model: block, memory: memory)
        try bus.add(transport, slot: slot)
    }

    static func handoverName(_ id: String) -> String { "drive-" + id }

    var id: String { config.id }
    var topology: String {
        "virtio-blk-pci addr=\(PciBus.hex(slot)).0 drive=\(config.drive.id) sectors=\(image.size / BlockImage.sectorSize) read-only=\(image.readOnly ? "on" : "off")"
    }

    func attach(to buses: Buses) throws {
        try transport.worker.start()
    }

    var stateSection: (name: String, version: UInt32)? { ("\(VirtioBlockDevice.sectionKind).\(config.id)", VirtioBlockDevice.sectionVersion) }

    func saveState() throws -> [UInt8] {
        var encoder = StateEncoder()
        transport.encodeSection(into: &encoder, bus: bus)
        return encoder.bytes
    }

    func loadState(_ section: StateSection) throws {
        var decoder = StateDecoder(section.payload, section: section.name)
        try transport.decodeSection(from: &decoder, bus: bus, section: section.name)
        try decoder.finish()
        transport.stateLoaded(bus: bus)
    }

    /// Places the BARs and enables MSI-X (the guest programs the table in BAR1 itself;
    /// vectors start masked), for the built-in guest.
    func placeForBuiltinGuest() {
        transport.placeForBuiltinGuest(bus: bus, bar4: UInt32(GUEST_DISK_BAR4), bar1: UInt32(GUEST_DISK_BAR1), msix: true)
    }

    var handoverFDs: [(name: String, fd: Int32)] { [(VirtioBlockDevice.handoverName(config.id), image.fd)] }
    /// The image goes to the fd store too: a process restarted after a crash mid-update
    /// resumes the guest on the very file it had open.
    var storedFDs: [(name: String, fd: Int32)] { handoverFDs }

    func quiesce() { transport.worker.quiesce() }
    func resume() { transport.worker.resume() }
}
