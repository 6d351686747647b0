/// Routes port I/O exits to devices. Unknown ports read as all-ones (an empty ISA bus) and
/// are logged, rate-limited, and otherwise ignored: probing guests are normal (kvmtool does the same).
final class IoBus {
    private let bus = AddressBus<PortDevice>(unit: "I/O ports", limit: 0x10000)
    private let unknownPortLog = RateLimiter()
    /// Ports that guests and firmware use for delays or POST codes; silently ignored.
    private let quietPorts: Set<UInt16> = [0x80, 0xED]

    /// Maps `count` ports from `base` to `device`; an empty, overflowing or overlapping range
    /// is refused, naming both devices.
    func register(_ device: PortDevice, name: String, base: UInt16, count: UInt16) throws {
        try bus.register(device, name: name, base: UInt64(base), size: UInt64(count))
    }

    /// Removes the mapping `name` at `base` (a guest moved or disabled an I/O BAR).
    @discardableResult
    func unregister(name: String, base: UInt16) -> Bool { bus.unregister(name: name, base: UInt64(base)) }

    /// One exit may carry a string instruction (`rep outsb`): `count` accesses of `size` bytes.
    func write(port: UInt16, size: Int, count: Int, data: UnsafeRawBufferPointer) {
        guard let mapping = bus.lookup(UInt64(port)) else {
            if !quietPorts.contains(port) {
                unknownPortLog.log("guest wrote \(size) byte(s) to unknown I/O port 0x\(String(port, radix: 16)); ignored")
            }
            return
        }
        mapping.target.portWrite(offset: UInt16(UInt64(port) - mapping.base), size: size, count: count, from: data)
    }

    func read(port: UInt16, size: Int, count: Int, data: UnsafeMutableRawBufferPointer) {
        guard let mapping = bus.lookup(UInt64(port)) else {
            data.initializeMemory(as: UInt8.self, repeating: 0xFF)
            if !quietPorts.contains(port) {
                unknownPortLog.log("guest read \(size) byte(s) from unknown I/O port 0x\(String(port, radix: 16)); returned 0xff")
            }
            return
        }
        let offset = UInt16(UInt64(port) - mapping.base)
        for i in 0..<count {
            mapping.target.portRead(offset: offset, into: UnsafeMutableRawBufferPointer(rebasing: data[i * size..<(i + 1) * size]))
        }
    }

    /// The ports a vCPU bridge may serve on its own now, and how (VcpuBridge).
    func bridgePorts() -> [(port: UInt16, access: PortBridgeAccess)] {
        var ports: [(port: UInt16, access: PortBridgeAccess)] = []
        for mapping in bus.mappings {
            for offset in 0..<UInt16(mapping.size) {
                let access = mapping.target.bridgeAccess(offset: offset)
                if access != .none { ports.append((UInt16(mapping.base) + offset, access)) }
            }
        }
        return ports
    }
}
