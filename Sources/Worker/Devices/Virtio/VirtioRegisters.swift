/// The common configuration structure of virtio over PCI (4.1.4.3), as registers: what the
/// driver negotiated and programmed. Pure state, testable without KVM; the transport holds
/// it under its lock. Fields are accessed at their natural width (64-bit addresses also as
/// two 32-bit halves); other accesses read as 0 and are ignored on write, as QEMU does.
struct VirtioRegisters: Equatable {
    static let size = 0x38

    var deviceFeatureSelect: UInt32 = 0
    var driverFeatureSelect: UInt32 = 0
    var driverFeatures: UInt64 = 0
    var msixConfig: UInt16 = VirtioPciTransport.noVector
    var status: UInt8 = 0
    var configGeneration: UInt8 = 0
    var queueSelect: UInt16 = 0
    var queues: [Virtqueue] = []
    var isr: UInt8 = 0

    enum WriteEffect: Equatable {
        case none
        /// The driver wrote 0 to the status: the device starts over.
        case reset
        /// DRIVER_OK was set: requests may be served.
        case started
        /// The driver enabled a queue whose rings cannot work; the device needs a reset.
        case invalidQueue(String)
    }

    var driverReady: Bool {
        status & VirtioPciTransport.statusDriverOK != 0 && status & VirtioPciTransport.statusNeedsReset == 0
    }

    mutating func reset(queues count: Int) {
        self = VirtioRegisters()
        queues = Array(repeating: Virtqueue(), count: count)
    }

    private var selected: Virtqueue? { Int(queueSelect) < queues.count ? queues[Int(queueSelect)] : nil }

    func readCommon(_ offset: Int, size: Int, offered: UInt64) -> UInt64 {
        let queue = selected
        let value: UInt64
        switch (offset, size) {
        case (0x00, 4): value = UInt64(deviceFeatureSelect)
        case (0x04, 4): value = deviceFeatureSelect < 2 ? (offered >> (32 * UInt64(deviceFeatureSelect))) & 0xFFFF_FFFF : 0
        case (0x08, 4): value = UInt64(driverFeatureSelect)
        case (0x0C, 4): value = driverFeatureSelect < 2 ? (driverFeatures >> (32 * UInt64(driverFeatureSelect))) & 0xFFFF_FFFF : 0
        case (0x10, 2): value = UInt64(msixConfig)
        case (0x12, 2): value = UInt64(queues.count)
        case (0x14, 1): value = UInt64(status)
        case (0x15, 1): value = UInt64(configGeneration)
        case (0x16, 2): value = UInt64(queueSelect)
        case (0x18, 2): value = UInt64(queue?.size ?? 0)
        case (0x1A, 2): value = UInt64(queue?.msixVector ?? VirtioPciTransport.noVector)
        case (0x1C, 2): value = queue?.ready == true ? 1 : 0
        case (0x1E, 2): value = UInt64(queueSelect)  // notify_off: queue N notifies at N * multiplier
        case (0x20, 8), (0x20, 4): value = (queue?.descriptorTable ?? 0) & (size == 4 ? 0xFFFF_FFFF : ~0)
        case (0x24, 4): value = (queue?.descriptorTable ?? 0) >> 32
        case (0x28, 8), (0x28, 4): value = (queue?.availRing ?? 0) & (size == 4 ? 0xFFFF_FFFF : ~0)
        case (0x2C, 4): value = (queue?.availRing ?? 0) >> 32
        case (0x30, 8), (0x30, 4): value = (queue?.usedRing ?? 0) & (size == 4 ? 0xFFFF_FFFF : ~0)
        case (0x34, 4): value = (queue?.usedRing ?? 0) >> 32
        default: value = 0
        }
        return value
    }

    mutating func writeCommon(_ offset: Int, size: Int, value: UInt64, offered: UInt64, memory: GuestMemory) -> WriteEffect {
        let index = Int(queueSelect)
        let hasQueue = index < queues.count
        // A queue's layout is fixed once enabled (until a reset).
        let queueWritable = hasQueue && !queues[index].ready
        func setHalf(_ field: inout UInt64, high: Bool) {
            field = high ? (field & 0xFFFF_FFFF) | (value << 32) : (field & ~0xFFFF_FFFF) | (value & 0xFFFF_FFFF)
        }
        switch (offset, size) {
        case (0x00, 4): deviceFeatureSelect = UInt32(truncatingIfNeeded: value)
        case (0x08, 4): driverFeatureSelect = UInt32(truncatingIfNeeded: value)
        case (0x0C, 4):
            guard status & VirtioPciTransport.statusFeaturesOK == 0, driverFeatureSelect < 2 else { break }
            setHalf(&driverFeatures, high: driverFeatureSelect == 1)
        case (0x10, 2): msixConfig = UInt16(truncatingIfNeeded: value)
        case (0x14, 1): return writeStatus(UInt8(truncatingIfNeeded: value), offered: offered)
        case (0x16, 2): queueSelect = UInt16(truncatingIfNeeded: value)
        case (0x18, 2) where queueWritable:
            // The driver may shrink the queue to a power of two (SeaBIOS uses at most 256).
            let requested = UInt16(truncatingIfNeeded: value)
            if requested > 0, requested <= Virtqueue.maxSize, requested & (requested - 1) == 0 { queues[index].size = requested }
        case (0x1A, 2) where hasQueue: queues[index].msixVector = UInt16(truncatingIfNeeded: value)
        case (0x1C, 2) where queueWritable && value & 1 == 1:
            if let problem = queues[index].validate(memory) {
                status |= VirtioPciTransport.statusNeedsReset
                return .invalidQueue("queue \(index): \(problem)")
            }
            queues[index].ready = true
        case (0x20, 8) where queueWritable: queues[index].descriptorTable = value
        case (0x20, 4) where queueWritable: setHalf(&queues[index].descriptorTable, high: false)
        case (0x24, 4) where queueWritable: setHalf(&queues[index].descriptorTable, high: true)
        case (0x28, 8) where queueWritable: queues[index].availRing = value
        case (0x28, 4) where queueWritable: setHalf(&queues[index].availRing, high: false)
        case (0x2C, 4) where queueWritable: setHalf(&queues[index].availRing, high: true)
        case (0x30, 8) where queueWritable: queues[index].usedRing = value
        case (0x30, 4) where queueWritable: setHalf(&queues[index].usedRing, high: false)
        case (0x34, 4) where queueWritable: setHalf(&queues[index].usedRing, high: true)
        default: break
        }
        return .none
    }

    /// 0 resets; FEATURES_OK sticks only for features the device offered, with VERSION_1
    /// (a modern-only device); DRIVER_OK starts the device. NEEDS_RESET stays until a reset.
    private mutating func writeStatus(_ value: UInt8, offered: UInt64) -> WriteEffect {
        guard value != 0 else { return .reset }
        var accepted = value & ~VirtioPciTransport.statusNeedsReset
        let featuresOK = driverFeatures & ~offered == 0 && driverFeatures & VirtioPciTransport.featureVersion1 != 0
        if accepted & VirtioPciTransport.statusFeaturesOK != 0 && !featuresOK {
            accepted &= ~VirtioPciTransport.statusFeaturesOK
        }
        let wasStarted = status & VirtioPciTransport.statusDriverOK != 0
        status = accepted | (status & VirtioPciTransport.statusNeedsReset)
        return !wasStarted && status & VirtioPciTransport.statusDriverOK != 0 ? .started : .none
    }
}

/// The MSI-X table and pending bits (PCI 3.0, 6.8.2): per vector an address, data and a
/// control word whose bit 0 masks it. Vectors start masked.
struct MsixTable: Equatable {
    let vectors: Int
    private(set) var entries: [UInt32]
    private var pendingBits: UInt64 = 0

    init(vectors: Int) {
        precondition(vectors <= 64, "one PBA word")
        self.vectors = vectors
        entries = (0..<vectors).flatMap { _ in [UInt32(0), 0, 0, 1] }
    }

    func masked(_ vector: Int) -> Bool { entries[4 * vector + 3] & 1 != 0 }
    func pending(_ vector: Int) -> Bool { pendingBits & (1 << UInt64(vector)) != 0 }
    mutating func setPending(_ vector: Int, _ on: Bool) {
        if on { pendingBits |= 1 << UInt64(vector) } else { pendingBits &= ~(1 << UInt64(vector)) }
    }

    func message(_ vector: Int) -> (address: UInt64, data: UInt32) {
        (UInt64(entries[4 * vector]) | UInt64(entries[4 * vector + 1]) << 32, entries[4 * vector + 2])
    }

    func read(offset: Int, size: Int) -> UInt64 {
        if offset >= Int(VirtioPciTransport.msixPBAOffset) {
            return offset == Int(VirtioPciTransport.msixPBAOffset) ? pendingBits & (size == 8 ? ~0 : 0xFFFF_FFFF) : 0
        }
        guard offset % 4 == 0, size == 4 || size == 8, offset / 4 < entries.count else { return 0 }
        var value = UInt64(entries[offset / 4])
        if size == 8, offset / 4 + 1 < entries.count { value |= UInt64(entries[offset / 4 + 1]) << 32 }
        return value
    }

    mutating func write(offset: Int, size: Int, value: UInt64) {
        guard offset < Int(VirtioPciTransport.msixPBAOffset), offset % 4 == 0, size == 4 || size == 8 else { return }  // the PBA is read-only
        for word in 0..<(size / 4) where offset / 4 + word < entries.count {
            let index = offset / 4 + word
            let part = UInt32(truncatingIfNeeded: value >> (32 * UInt64(word)))
            // Only the mask bit of the control word is writable.
            entries[index] = index % 4 == 3 ? part & 1 : part
        }
    }

    /// For the state section: every word, then the pending bits.
    var words: [UInt32] { entries + [UInt32(truncatingIfNeeded: pendingBits), UInt32(truncatingIfNeeded: pendingBits >> 32)] }

    mutating func restore(words saved: [UInt32]) -> Bool {
        guard saved.count == entries.count + 2 else { return false }
        entries = Array(saved[0..<entries.count])
        for index in stride(from: 3, to: entries.count, by: 4) { entries[index] &= 1 }
        pendingBits = UInt64(saved[entries.count]) | UInt64(saved[entries.count + 1]) << 32
        pendingBits &= vectors == 64 ? ~0 : (1 << UInt64(vectors)) - 1
        return true
    }
}
