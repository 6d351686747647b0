import Shared

/// The transport's part of a virtio device's state section: the PCI config space, then the
/// registers, the queues and the MSI-X table. Each device appends its own fields after it.
extension VirtioPciTransport {
    static let maxQueues = 64

    /// Writes the transport's part; the device must be quiesced.
    func encodeSection(into encoder: inout StateEncoder, bus: PciBus) {
        encoder.lengthPrefixedBytes(bus.withConfig(self) { $0.bytes })
        lock.withLock { encodeState(into: &encoder) }
    }

    /// Reads the transport's part, naming the section in any error.
    func decodeSection(from decoder: inout StateDecoder, bus: PciBus, section: String) throws {
        let configBytes = try decoder.lengthPrefixedBytes(limit: PciConfigSpace.size)
        do {
            try bus.withConfig(self) { try $0.restore(configBytes) }
            try decodeState(from: &decoder)
        } catch let error as StateFormatError {
            throw error
        } catch {
            throw StateFormatError.malformed("section '\(section)': \(error)")
        }
    }

    /// After a load: the cached MSI-X bits, the KVM routes and the BAR mappings follow the
    /// loaded state. The vCPUs are not running yet, so no bus lock is needed.
    func stateLoaded(bus: PciBus) {
        configWritten(offset: 0, size: 0)
        messagesChanged(0..<msix.vectors)
        bus.refreshBars(self)
    }

    /// Programs the BARs and enables memory decoding and bus mastering (and MSI-X), as
    /// firmware and an OS would, for the built-in guest, which has neither.
    func placeForBuiltinGuest(bus: PciBus, bar4: UInt32, bar1: UInt32, msix: Bool) {
        let structures = PciConfigSpace.barOffset + 4 * VirtioPciTransport.structuresBar
        bus.hostConfigWrite(self, offset: structures, size: 4, value: bar4)
        bus.hostConfigWrite(self, offset: structures + 4, size: 4, value: 0)
        bus.hostConfigWrite(self, offset: PciConfigSpace.barOffset + 4 * VirtioPciTransport.msixBar, size: 4, value: bar1)
        bus.hostConfigWrite(self, offset: PciConfigSpace.commandOffset, size: 2,
                            value: UInt32(PciConfigSpace.commandMemory | PciConfigSpace.commandBusMaster))
        if msix { bus.hostConfigWrite(self, offset: msixCapability + 2, size: 2, value: 0x8000) }
    }

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
