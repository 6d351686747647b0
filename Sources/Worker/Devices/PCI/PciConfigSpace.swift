/// One PCI function's 256-byte configuration space (type 0 header), with the masks that make
/// it behave like hardware: bits the guest may write, bits a 1 clears, and BARs whose size
/// a guest finds by writing all ones and reading back. Pure data: testable without KVM.
struct PciConfigSpace: Equatable {
    static let size = 256
    static let commandOffset = 0x04
    static let statusOffset = 0x06
    static let barOffset = 0x10
    static let romOffset = 0x30
    static let capabilityPointerOffset = 0x34
    static let interruptLineOffset = 0x3C
    static let interruptPinOffset = 0x3D

    static let commandIO: UInt16 = 0x1
    static let commandMemory: UInt16 = 0x2
    static let commandBusMaster: UInt16 = 0x4
    static let commandInterruptDisable: UInt16 = 0x400
    static let statusInterrupt: UInt16 = 0x08
    static let statusCapabilities: UInt16 = 0x10

    enum BarKind: Equatable {
        case io
        case memory32
        case memory64
    }

    struct Bar: Equatable {
        var kind: BarKind
        var size: UInt64
    }

    private(set) var bytes = [UInt8](repeating: 0, count: size)
    private var writable = [UInt8](repeating: 0, count: size)
    private var writeOneToClear = [UInt8](repeating: 0, count: size)
    private(set) var bars: [Bar?] = Array(repeating: nil, count: 6)
    /// The expansion ROM BAR (offset 0x30), if the function has a ROM: PciBus maps it as BAR
    /// index `romIndex`.
    private(set) var rom: Bar?
    static let romIndex = 6
    /// Where the next capability goes (they are appended from 0x40 on).
    private var nextCapability = 0x40
    private var lastCapability: Int?

    init(vendor: UInt16, device: UInt16, classCode: UInt32, revision: UInt8 = 0, headerType: UInt8 = 0,
         subsystemVendor: UInt16 = 0, subsystem: UInt16 = 0, interruptPin: UInt8 = 0) {
        put16(0x00, vendor)
        put16(0x02, device)
        bytes[0x08] = revision
        bytes[0x09] = UInt8(classCode & 0xFF)
        bytes[0x0A] = UInt8((classCode >> 8) & 0xFF)
        bytes[0x0B] = UInt8((classCode >> 16) & 0xFF)
        bytes[0x0E] = headerType
        put16(0x2C, subsystemVendor)
        put16(0x2E, subsystem)
        bytes[PciConfigSpace.interruptPinOffset] = interruptPin
        let command = PciConfigSpace.commandIO | PciConfigSpace.commandMemory | PciConfigSpace.commandBusMaster
            | 0x0040 /* parity */ | 0x0100 /* SERR */ | (interruptPin != 0 ? PciConfigSpace.commandInterruptDisable : 0)
        setWritable(PciConfigSpace.commandOffset, 2, UInt32(command))
        // Status: the error bits are write-one-to-clear; nothing else is writable.
        writeOneToClear[0x07] = 0xF9
        setWritable(0x0C, 2, 0xFFFF)  // cache line size, latency timer
        setWritable(PciConfigSpace.interruptLineOffset, 1, 0xFF)
    }

    /// Declares BAR `index` (a 64-bit BAR also takes `index + 1`). Sizes are powers of two:
    /// at least 16 bytes of memory or 4 of I/O ports.
    mutating func addBar(_ index: Int, kind: BarKind, size: UInt64, prefetchable: Bool = false) {
        precondition(size.nonzeroBitCount == 1 && size >= (kind == .io ? 4 : 16), "BAR sizes are powers of two")
        precondition(index < (kind == .memory64 ? 5 : 6) && bars[index] == nil)
        bars[index] = Bar(kind: kind, size: size)
        let offset = PciConfigSpace.barOffset + 4 * index
        switch kind {
        case .io:
            bytes[offset] = 0x1
            setWritable(offset, 4, UInt32(truncatingIfNeeded: ~(size - 1)) & 0xFFFF_FFFC)
        case .memory32:
            bytes[offset] = prefetchable ? 0x8 : 0
            setWritable(offset, 4, UInt32(truncatingIfNeeded: ~(size - 1)) & 0xFFFF_FFF0)
        case .memory64:
            bytes[offset] = 0x4 | (prefetchable ? 0x8 : 0)
            let mask = ~(size - 1) & ~UInt64(0xF)
            setWritable(offset, 4, UInt32(truncatingIfNeeded: mask))
            setWritable(offset + 4, 4, UInt32(truncatingIfNeeded: mask >> 32))
        }
    }

    /// Declares an expansion ROM of `size` bytes (a power of two, at least 2 KiB): the guest
    /// sizes it like a BAR and enables decoding with bit 0.
    mutating func addROM(size: UInt64) {
        precondition(size.nonzeroBitCount == 1 && size >= 2048 && size <= 1 << 24, "ROM sizes are powers of two")
        rom = Bar(kind: .memory32, size: size)
        setWritable(PciConfigSpace.romOffset, 4, (UInt32(truncatingIfNeeded: ~(size - 1)) & 0xFFFF_F800) | 1)
    }

    /// Appends a capability (`body` starts after the id and next-pointer bytes) and returns its
    /// offset; `writableBody` gives the body's writable bits, byte by byte.
    @discardableResult
    mutating func addCapability(id: UInt8, body: [UInt8], writableBody: [UInt8] = []) -> Int {
        let offset = nextCapability
        precondition(offset + 2 + body.count <= PciConfigSpace.size, "PCI capabilities overflow the config space")
        bytes[offset] = id
        bytes[offset + 1] = 0
        for (i, byte) in body.enumerated() { bytes[offset + 2 + i] = byte }
        for (i, mask) in writableBody.enumerated() { writable[offset + 2 + i] = mask }
        if let last = lastCapability {
            bytes[last + 1] = UInt8(offset)
        } else {
            bytes[PciConfigSpace.capabilityPointerOffset] = UInt8(offset)
            bytes[PciConfigSpace.statusOffset] |= UInt8(PciConfigSpace.statusCapabilities)
        }
        lastCapability = offset
        nextCapability = (offset + 2 + body.count + 3) & ~3
        return offset
    }

    /// Makes `count` bytes at `offset` writable by `mask` (little-endian), for device-specific registers.
    mutating func setWritable(_ offset: Int, _ count: Int, _ mask: UInt32) {
        for i in 0..<count { writable[offset + i] = UInt8(truncatingIfNeeded: mask >> (8 * i)) }
    }

    /// `size` bytes (1, 2 or 4) at `offset`, little-endian; beyond the space reads all ones.
    func read(_ offset: Int, size: Int) -> UInt32 {
        var value: UInt32 = 0
        for i in 0..<size {
            let byte = offset + i < PciConfigSpace.size ? bytes[offset + i] : 0xFF
            value |= UInt32(byte) << (8 * i)
        }
        return value
    }

    /// A guest write: only writable bits change; write-one-to-clear bits clear where 1 is written.
    mutating func write(_ offset: Int, size: Int, value: UInt32) {
        for i in 0..<size where offset + i < PciConfigSpace.size {
            let byte = UInt8(truncatingIfNeeded: value >> (8 * i))
            let index = offset + i
            bytes[index] = (bytes[index] & ~writable[index]) | (byte & writable[index])
            bytes[index] &= ~(byte & writeOneToClear[index])
        }
    }

    /// Sets bytes the device itself owns (status bits, device registers), bypassing the masks.
    mutating func put16(_ offset: Int, _ value: UInt16) {
        bytes[offset] = UInt8(value & 0xFF)
        bytes[offset + 1] = UInt8(value >> 8)
    }

    mutating func put8(_ offset: Int, _ value: UInt8) { bytes[offset] = value }

    var command: UInt16 { UInt16(read(PciConfigSpace.commandOffset, size: 2)) }
    var interruptPin: UInt8 { bytes[PciConfigSpace.interruptPinOffset] }
    var vendorID: UInt16 { UInt16(read(0, size: 2)) }
    var deviceID: UInt16 { UInt16(read(2, size: 2)) }

    mutating func setInterruptStatus(_ on: Bool) {
        if on { bytes[PciConfigSpace.statusOffset] |= UInt8(PciConfigSpace.statusInterrupt) } else {
            bytes[PciConfigSpace.statusOffset] &= ~UInt8(PciConfigSpace.statusInterrupt)
        }
    }

    /// Where BAR `index` decodes now: nil when it is not a BAR, its space is disabled in the
    /// command register, or it holds an address no access can reach (0, or an I/O address
    /// above 0xffff, or a range that wraps).
    func barAddress(_ index: Int) -> UInt64? {
        if index == PciConfigSpace.romIndex {
            // The ROM decodes with its enable bit and memory space both on.
            let value = read(PciConfigSpace.romOffset, size: 4)
            guard rom != nil, value & 1 != 0, command & PciConfigSpace.commandMemory != 0 else { return nil }
            let address = UInt64(value & 0xFFFF_F800)
            return address == 0 ? nil : address
        }
        guard let bar = bars[index] else { return nil }
        let offset = PciConfigSpace.barOffset + 4 * index
        let low = UInt64(read(offset, size: 4))
        let address: UInt64
        switch bar.kind {
        case .io:
            guard command & PciConfigSpace.commandIO != 0 else { return nil }
            address = low & ~0x3
            guard address + bar.size <= 0x10000 else { return nil }
        case .memory32:
            guard command & PciConfigSpace.commandMemory != 0 else { return nil }
            address = low & ~0xF
        case .memory64:
            guard command & PciConfigSpace.commandMemory != 0 else { return nil }
            address = (low & ~0xF) | UInt64(read(offset + 4, size: 4)) << 32
            guard address <= UInt64.max - bar.size else { return nil }
        }
        return address == 0 ? nil : address
    }

    /// BAR `index`, the ROM for `romIndex`.
    func bar(_ index: Int) -> Bar? { index == PciConfigSpace.romIndex ? rom : bars[index] }

    /// Replaces the bytes with saved ones (the masks come from the device's own declaration).
    mutating func restore(_ saved: [UInt8]) throws {
        guard saved.count == PciConfigSpace.size else {
            throw ConfigurationError("a PCI config space of \(saved.count) bytes (expected \(PciConfigSpace.size))")
        }
        // Read-only bytes must match what this build declares: ids, class, BAR flags.
        for i in 0..<PciConfigSpace.size where (saved[i] ^ bytes[i]) & ~writable[i] & ~writeOneToClear[i] != 0 {
            if i == PciConfigSpace.statusOffset || i == PciConfigSpace.statusOffset + 1 { continue }  // interrupt status is live
            if i >= 0x40 { continue }  // capability bodies hold device-owned state too
            throw ConfigurationError("PCI config byte 0x\(String(i, radix: 16)) is 0x\(String(saved[i], radix: 16)) in the state, 0x\(String(bytes[i], radix: 16)) here")
        }
        bytes = saved
    }

}
