/// A device in guest-physical address space. `offset` is relative to the mapping's base.
/// Called from vCPU threads, possibly several at once: devices lock their own state.
protocol MmioDevice: AnyObject {
    func mmioRead(offset: UInt64, into data: UnsafeMutableRawBufferPointer)
    func mmioWrite(offset: UInt64, from data: UnsafeRawBufferPointer)
}

/// Routes MMIO exits (addresses that no memory slot covers) to devices. An address nothing
/// maps reads as all-ones, as an unclaimed PCI read does on a PC; writes are dropped. Both are
/// logged, rate-limited.
final class MmioBus {
    private let bus = AddressBus<MmioDevice>(unit: "MMIO", limit: 1 << 52)
    private let unknownLog = RateLimiter()

    func register(_ device: MmioDevice, name: String, base: UInt64, size: UInt64) throws {
        try bus.register(device, name: name, base: base, size: size)
    }

    @discardableResult
    func unregister(name: String, base: UInt64) -> Bool { bus.unregister(name: name, base: base) }

    /// An access that straddles the end of a mapping goes to no device: real chipsets do not
    /// split one access between two decoders either.
    func read(address: UInt64, data: UnsafeMutableRawBufferPointer) {
        if let mapping = bus.lookup(address), address + UInt64(data.count) <= mapping.end {
            mapping.target.mmioRead(offset: address - mapping.base, into: data)
            return
        }
        data.initializeMemory(as: UInt8.self, repeating: 0xFF)
        unknownLog.log("guest MMIO read of \(data.count) bytes at 0x\(String(address, radix: 16)) hits no device; returned all ones")
    }

    func write(address: UInt64, data: UnsafeRawBufferPointer) {
        if let mapping = bus.lookup(address), address + UInt64(data.count) <= mapping.end {
            mapping.target.mmioWrite(offset: address - mapping.base, from: data)
            return
        }
        unknownLog.log("guest MMIO write of \(data.count) bytes at 0x\(String(address, radix: 16)) hits no device; ignored")
    }

    var mappings: [AddressBus<MmioDevice>.Mapping] { bus.mappings }
}
