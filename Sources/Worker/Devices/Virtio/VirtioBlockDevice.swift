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
        encoder.lengthPrefixedBytes(bus.withConfig(transport) { $0.bytes })
        transport.lock.withLock { transport.encodeState(into: &encoder) }
        return encoder.bytes
    }

    func loadState(_ section: StateSection) throws {
        var decoder = StateDecoder(section.payload, section: section.name)
        let configBytes = try decoder.lengthPrefixedBytes(limit: PciConfigSpace.size)
        do {
            try bus.withConfig(transport) { try $0.restore(configBytes) }
            try transport.decodeState(from: &decoder)
        } catch let error as StateFormatError {
            throw error
        } catch {
            throw StateFormatError.malformed("section '\(section.name)': \(error)")
        }
        try decoder.finish()
        // The vCPUs are not running yet: the cached MSI-X bits can be read without the bus lock.
        transport.configWritten(offset: 0, size: 0)
        transport.messagesChanged(0..<transport.msix.vectors)
        bus.refreshBars(transport)
    }

    /// Programs the BARs, enables memory decoding, bus mastering and MSI-X, as firmware and
    /// an OS would, for the built-in guest (which has neither).
    func placeForBuiltinGuest() {
        bus.hostConfigWrite(transport, offset: PciConfigSpace.barOffset + 4 * VirtioPciTransport.structuresBar, size: 4, value: UInt32(GUEST_DISK_BAR4))
        bus.hostConfigWrite(transport, offset: PciConfigSpace.barOffset + 4 * VirtioPciTransport.structuresBar + 4, size: 4, value: 0)
        bus.hostConfigWrite(transport, offset: PciConfigSpace.barOffset + 4 * VirtioPciTransport.msixBar, size: 4, value: UInt32(GUEST_DISK_BAR1))
        bus.hostConfigWrite(transport, offset: PciConfigSpace.commandOffset, size: 2,
                            value: UInt32(PciConfigSpace.commandMemory | PciConfigSpace.commandBusMaster))
        // MSI-X on (the guest programs the table in BAR1 itself; vectors start masked).
        bus.hostConfigWrite(transport, offset: transport.msixCapability + 2, size: 2, value: 0x8000)
    }

    var handoverFDs: [(name: String, fd: Int32)] { [(VirtioBlockDevice.handoverName(config.id), image.fd)] }
    /// The image goes to the fd store too: a process restarted after a crash mid-update
    /// resumes the guest on the very file it had open.
    var storedFDs: [(name: String, fd: Int32)] { handoverFDs }

    func quiesce() { transport.worker.quiesce() }
    func resume() { transport.worker.resume() }
}

extension VirtioPciTransport {
    static let maxQueues = 64

    /// Registers, queues and MSI-X table (the caller holds the lock).
    func encodeState(into encoder: inout StateEncoder) {
        encoder.u32(registers.deviceFeatureSelect)
        encoder.u32(registers.driverFeatureSelect)
        encoder.u64(registers.driverFeatures)
        encoder.u16(registers.msixConfig)
        encoder.u8(registers.status)
        encoder.u8(registers.configGeneration)
        encoder.u16(registers.queueSelect)
        encoder.u8(registers.isr)
        encoder.u32(UInt32(registers.queues.count))
        for queue in registers.queues {
            encoder.u16(queue.size)
            encoder.bool(queue.ready)
            encoder.u64(queue.descriptorTable)
            encoder.u64(queue.availRing)
            encoder.u64(queue.usedRing)
            encoder.u16(queue.msixVector)
            encoder.u16(queue.nextAvail)
            encoder.u16(queue.nextUsed)
        }
        let words = msix.words
        encoder.u32(UInt32(words.count))
        for word in words { encoder.u32(word) }
    }

    func decodeState(from decoder: inout StateDecoder) throws {
        var state = VirtioRegisters()
        state.deviceFeatureSelect = try decoder.u32()
        state.driverFeatureSelect = try decoder.u32()
        state.driverFeatures = try decoder.u64()
        state.msixConfig = try decoder.u16()
        state.status = try decoder.u8()
        state.configGeneration = try decoder.u8()
        state.queueSelect = try decoder.u16()
        state.isr = try decoder.u8()
        let count = Int(try decoder.u32())
        guard count == model.queueCount else {
            throw ConfigurationError("the state holds \(count) queues, this device has \(model.queueCount)")
        }
        for _ in 0..<count {
            var queue = Virtqueue()
            queue.size = try decoder.u16()
            queue.ready = try decoder.bool()
            queue.descriptorTable = try decoder.u64()
            queue.availRing = try decoder.u64()
            queue.usedRing = try decoder.u64()
            queue.msixVector = try decoder.u16()
            queue.nextAvail = try decoder.u16()
            queue.nextUsed = try decoder.u16()
            // An enabled queue must be one a driver could have enabled here.
            if queue.ready, let problem = queue.validate(memory) { throw ConfigurationError("queue: \(problem)") }
            state.queues.append(queue)
        }
        guard state.driverFeatures & ~offeredFeatures == 0 else {
            throw ConfigurationError("the driver features 0x\(String(state.driverFeatures, radix: 16)) include some this device does not offer")
        }
        let wordCount = Int(try decoder.u32())
        guard wordCount <= 4 * VirtioPciTransport.maxQueues + 2 else { throw ConfigurationError("an MSI-X table of \(wordCount) words") }
        let words = try (0..<wordCount).map { _ in try decoder.u32() }
        try lock.withLock {
            guard msix.restore(words: words) else { throw ConfigurationError("the MSI-X table has \(wordCount) words, this device \(msix.words.count)") }
            registers = state
        }
    }
}
