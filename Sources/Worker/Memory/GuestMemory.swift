/// A contiguous guest-physical range backed by part of a RamBlock.
public struct GuestRegion {
    public let start: GuestAddress
    public let size: UInt64
    public let block: RamBlock
    public let blockOffset: UInt64
    /// Firmware is mapped read-only: guest writes to it become MMIO exits, as on real ROM.
    public let readOnly: Bool

    public var end: UInt64 { start.raw + size }

    func contains(_ address: GuestAddress, length: UInt64) -> Bool {
        guard let offset = address.offset(from: start) else { return false }
        return offset <= size && length <= size - offset
    }
}

public enum GuestMemoryError: Error, CustomStringConvertible, Equatable {
    case outOfBounds(GuestAddress, length: UInt64)
    case overlappingRegions(String, String)

    public var description: String {
        switch self {
        case .outOfBounds(let address, let length):
            return "guest memory access of \(length) bytes at \(address) is outside guest RAM"
        case .overlappingRegions(let a, let b):
            return "RAM regions \(a) and \(b) overlap"
        }
    }
}

/// The guest-physical address space as the VMM sees it. Every access is bounds-checked
/// against one region, so no guest-supplied address can reach host memory outside guest RAM.
public final class GuestMemory {
    public let regions: [GuestRegion]

    public init(regions: [GuestRegion]) throws(GuestMemoryError) {
        let sorted = regions.sorted { $0.start < $1.start }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.end > b.start.raw {
            throw .overlappingRegions(a.block.name, b.block.name)
        }
        for region in sorted {
            precondition(region.blockOffset + region.size <= region.block.size, "region exceeds its RAM block")
        }
        self.regions = sorted
    }

    private func region(containing address: GuestAddress, length: UInt64) -> GuestRegion? {
        // Few regions (RAM low/high, firmware and its alias): a linear scan beats a search.
        regions.first { $0.contains(address, length: length) }
    }

    /// Host bytes for [address, address+count), which must lie within one region.
    public func slice(at address: GuestAddress, count: Int) throws(GuestMemoryError) -> UnsafeMutableRawBufferPointer {
        let length = UInt64(count)
        guard count >= 0, let region = region(containing: address, length: length) else {
            throw .outOfBounds(address, length: UInt64(max(count, 0)))
        }
        let offset = region.blockOffset + (address.raw - region.start.raw)
        // In bounds: the region lies inside its block's mapping (checked at init) and the
        // access lies inside the region (checked just above).
        return UnsafeMutableRawBufferPointer(start: region.block.host + Int(offset), count: count)
    }

    /// As `slice`, for a device that writes into guest memory (DMA): firmware ROM is refused,
    /// as a write there would change the firmware under the guest.
    public func writableSlice(at address: GuestAddress, count: Int) throws(GuestMemoryError) -> UnsafeMutableRawBufferPointer {
        guard let region = region(containing: address, length: UInt64(max(count, 0))), !region.readOnly else {
            throw .outOfBounds(address, length: UInt64(max(count, 0)))
        }
        return try slice(at: address, count: count)
    }

    /// A device wrote into `buffer` (from `writableSlice`), which is now complete: a pre-copy
    /// migration sends its pages again (DeviceWrites). Call it after the bytes are in place.
    public func deviceWrote(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let start = buffer.baseAddress, buffer.count > 0 else { return }
        for region in regions where region.block.contains(start) {
            region.block.deviceWrites.mark(offset: UnsafeRawPointer(start) - UnsafeRawPointer(region.block.host), count: buffer.count)
            return
        }
    }

    public func deviceWrote(_ buffers: [UnsafeMutableRawBufferPointer]) {
        for buffer in buffers { deviceWrote(buffer) }
    }

    public func write(_ bytes: some Collection<UInt8>, at address: GuestAddress) throws(GuestMemoryError) {
        let target = try slice(at: address, count: bytes.count)
        target.copyBytes(from: bytes)
        deviceWrote(target)
    }

    public func read(at address: GuestAddress, count: Int) throws(GuestMemoryError) -> [UInt8] {
        Array(try slice(at: address, count: count))
    }

    public func load<T: FixedWidthInteger>(_ type: T.Type, at address: GuestAddress) throws(GuestMemoryError) -> T {
        let bytes = try slice(at: address, count: MemoryLayout<T>.size)
        return T(littleEndian: bytes.loadUnaligned(as: T.self))
    }

    public func store<T: FixedWidthInteger>(_ value: T, at address: GuestAddress) throws(GuestMemoryError) {
        let bytes = try slice(at: address, count: MemoryLayout<T>.size)
        bytes.storeBytes(of: value.littleEndian, as: T.self)
        deviceWrote(bytes)
    }

    /// Sets [address, address+count) to zero.
    public func zero(at address: GuestAddress, count: Int) throws(GuestMemoryError) {
        let bytes = try slice(at: address, count: count)
        bytes.initializeMemory(as: UInt8.self, repeating: 0)
        deviceWrote(bytes)
    }
}
