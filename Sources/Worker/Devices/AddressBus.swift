/// An address space (I/O ports or MMIO) mapped to devices. vCPU threads look addresses up in
/// an immutable snapshot, sorted for binary search; a change (a device added, a guest moving a
/// PCI BAR while other vCPUs run) builds a new snapshot and swaps it in under a lock, so a
/// lookup never sees a half-changed map and never waits for a device.
final class AddressBus<Target>: @unchecked Sendable {
    struct Mapping {
        /// Who holds the range, for errors and logs ("COM1", "0000:00:03.0 BAR1").
        let name: String
        let base: UInt64
        let size: UInt64
        let target: Target

        var end: UInt64 { base + size }
        var range: String { "0x\(String(base, radix: 16))-0x\(String(end - 1, radix: 16))" }
    }

    /// What the bus is called in errors ("I/O ports", "MMIO").
    private let unit: String
    /// One past the highest address a mapping may cover.
    private let limit: UInt64
    private let lock = Lock()
    private var snapshot: [Mapping] = []

    init(unit: String, limit: UInt64) {
        self.unit = unit
        self.limit = limit
    }

    /// Maps `size` addresses from `base` to `target`. An empty or out-of-range mapping, or one
    /// overlapping another, is refused with an error naming both holders.
    func register(_ target: Target, name: String, base: UInt64, size: UInt64) throws {
        guard size > 0, base < limit, size <= limit - base else {
            throw ConfigurationError("\(name): no valid \(unit) range at 0x\(String(base, radix: 16)) with size 0x\(String(size, radix: 16))")
        }
        let mapping = Mapping(name: name, base: base, size: size, target: target)
        try lock.withLock {
            if let other = snapshot.first(where: { base < $0.end && $0.base < mapping.end }) {
                throw ConfigurationError("\(name): \(unit) \(mapping.range) overlap \(other.name) at \(other.range)")
            }
            var next = snapshot
            next.append(mapping)
            next.sort { $0.base < $1.base }
            snapshot = next
        }
    }

    /// Removes the mapping called `name` that starts at `base`; false if there is none.
    @discardableResult
    func unregister(name: String, base: UInt64) -> Bool {
        lock.withLock {
            guard let index = snapshot.firstIndex(where: { $0.name == name && $0.base == base }) else { return false }
            var next = snapshot
            next.remove(at: index)
            snapshot = next
            return true
        }
    }

    /// The mapping covering `address`, if any.
    func lookup(_ address: UInt64) -> Mapping? {
        let current = lock.withLock { snapshot }
        var low = 0, high = current.count
        while low < high {
            let middle = (low + high) / 2
            if current[middle].end <= address { low = middle + 1 } else { high = middle }
        }
        guard low < current.count, current[low].base <= address else { return nil }
        return current[low]
    }

    /// Every mapping, in address order.
    var mappings: [Mapping] { lock.withLock { snapshot } }
}
