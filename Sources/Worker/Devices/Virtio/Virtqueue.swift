/// A split virtqueue (virtio 1.x, 2.7) in guest RAM, from the device's side: the driver's
/// descriptor table and available ring, the device's used ring. Everything read from the
/// guest is checked before use; a guest that writes garbage gets an error for that request
/// (or the device marked as needing a reset), never a crash or an endless walk.
struct Virtqueue: Equatable {
    static let maxSize: UInt16 = 256
    static let descriptorFlagNext: UInt16 = 1
    static let descriptorFlagWrite: UInt16 = 2
    static let descriptorFlagIndirect: UInt16 = 4
    static let availFlagNoInterrupt: UInt16 = 1

    /// What the driver programmed through the common configuration.
    var size: UInt16 = Virtqueue.maxSize
    var ready = false
    var descriptorTable: UInt64 = 0
    var availRing: UInt64 = 0
    var usedRing: UInt64 = 0
    var msixVector: UInt16 = 0xFFFF
    /// The next available-ring entry the device takes, and the next used-ring entry it fills.
    /// Both count up forever, wrapping at 2^16, as the ring indexes do.
    var nextAvail: UInt16 = 0
    var nextUsed: UInt16 = 0

    /// One buffer of a chain: guest address and length, and whether the device writes it.
    struct Buffer: Equatable {
        var address: UInt64
        var length: UInt32
        var deviceWrites: Bool
    }

    /// A request: the head index (returned in the used ring) and its buffers in order.
    struct Chain: Equatable {
        var head: UInt16
        var buffers: [Buffer]

        var readable: [Buffer] { buffers.filter { !$0.deviceWrites } }
        var writable: [Buffer] { buffers.filter(\.deviceWrites) }
    }

    enum Failure: Error, Equatable, CustomStringConvertible {
        /// The rings themselves cannot be read: nothing can be completed, the device needs a reset.
        case ringOutsideRAM(UInt64)
        case headOutOfRange(UInt16)
        case availIndexJump(UInt16)
        /// The chain is unusable, but its head is known: complete it with an error.
        case badChain(head: UInt16, String)

        var description: String {
            switch self {
            case .ringOutsideRAM(let address): return "virtqueue ring at 0x\(String(address, radix: 16)) lies outside guest RAM"
            case .headOutOfRange(let head): return "available ring names descriptor \(head), beyond the queue"
            case .availIndexJump(let count): return "available index moved \(count) entries ahead, more than the queue holds"
            case .badChain(let head, let why): return "descriptor chain \(head): \(why)"
            }
        }
    }

    /// Rings must be aligned (2.7: 16, 2 and 4 bytes) and lie in RAM; checked when enabled.
    func validate(_ memory: GuestMemory) -> String? {
        guard size > 0, size <= Virtqueue.maxSize, size & (size - 1) == 0 else { return "queue size \(size) is not a power of two up to \(Virtqueue.maxSize)" }
        guard descriptorTable % 16 == 0, availRing % 2 == 0, usedRing % 4 == 0 else { return "misaligned ring addresses" }
        let s = Int(size)
        for (address, length) in [(descriptorTable, 16 * s), (availRing, 6 + 2 * s), (usedRing, 6 + 8 * s)] {
            if (try? memory.slice(at: GuestAddress(address), count: length)) == nil {
                return "ring at 0x\(String(address, radix: 16)) (\(length) bytes) lies outside guest RAM"
            }
        }
        return nil
    }

    /// How many requests the driver made available and the device has not taken.
    func pending(_ memory: GuestMemory) throws(Failure) -> UInt16 {
        let availIndex = try load(UInt16.self, availRing + 2, memory)
        let count = availIndex &- nextAvail
        guard count <= size else { throw .availIndexJump(count) }
        return count
    }

    /// Takes the next available chain, if any. On `badChain` the entry is consumed: the
    /// caller completes that head with an error so the driver gets its descriptors back.
    mutating func pop(_ memory: GuestMemory) throws(Failure) -> Chain? {
        guard try pending(memory) > 0 else { return nil }
        Fence.acquire()  // the ring entry is read after the index that published it
        let head = try load(UInt16.self, availRing + 4 + 2 * UInt64(nextAvail % size), memory)
        guard head < size else { throw .headOutOfRange(head) }
        nextAvail &+= 1
        var buffers: [Buffer] = []
        var index = head
        var sawWritable = false
        // A chain has at most `size` descriptors: one more means a loop.
        for _ in 0..<Int(size) {
            let base = descriptorTable + 16 * UInt64(index)
            let address = try load(UInt64.self, base, memory)
            let length = try load(UInt32.self, base + 8, memory)
            let flags = try load(UInt16.self, base + 12, memory)
            let next = try load(UInt16.self, base + 14, memory)
            if flags & Virtqueue.descriptorFlagIndirect != 0 {
                throw .badChain(head: head, "indirect descriptors were not negotiated")
            }
            let writes = flags & Virtqueue.descriptorFlagWrite != 0
            if !writes && sawWritable { throw .badChain(head: head, "a device-readable buffer follows a device-writable one") }
            sawWritable = sawWritable || writes
            buffers.append(Buffer(address: address, length: length, deviceWrites: writes))
            guard flags & Virtqueue.descriptorFlagNext != 0 else { return Chain(head: head, buffers: buffers) }
            guard next < size else { throw .badChain(head: head, "descriptor \(index) links to \(next), beyond the queue") }
            index = next
        }
        throw .badChain(head: head, "the chain is longer than the queue (a loop)")
    }

    /// Returns `head` to the driver with `written` bytes written, and says whether the driver
    /// wants an interrupt for it (without EVENT_IDX: unless it set NO_INTERRUPT).
    mutating func push(head: UInt16, written: UInt32, _ memory: GuestMemory) throws(Failure) -> Bool {
        let slot = usedRing + 4 + 8 * UInt64(nextUsed % size)
        try store(UInt32(head), slot, memory)
        try store(written, slot + 4, memory)
        nextUsed &+= 1
        Fence.release()  // the entry is visible before the index that publishes it
        try store(nextUsed, usedRing + 2, memory)
        Fence.full()  // the index is visible before the flags are read (no lost interrupt)
        let flags = try load(UInt16.self, availRing, memory)
        return flags & Virtqueue.availFlagNoInterrupt == 0
    }

    private func load<T: FixedWidthInteger>(_ type: T.Type, _ address: UInt64, _ memory: GuestMemory) throws(Failure) -> T {
        do { return try memory.load(type, at: GuestAddress(address)) } catch { throw .ringOutsideRAM(address) }
    }

    private func store<T: FixedWidthInteger>(_ value: T, _ address: UInt64, _ memory: GuestMemory) throws(Failure) {
        do { try memory.store(value, at: GuestAddress(address)) } catch { throw .ringOutsideRAM(address) }
    }
}
