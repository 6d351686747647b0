/// Routes port I/O exits to devices. Unknown ports read as all-ones (an empty ISA bus) and
/// are logged, rate-limited, and otherwise ignored: probing guests are normal (kvmtool does the same).
final class IoBus {
    private struct Mapping {
        let name: String
        let base: UInt16
        let count: UInt16
        let device: PortDevice

        var range: String { "0x\(String(base, radix: 16))-0x\(String(Int(base) + Int(count) - 1, radix: 16))" }
    }

    private var mappings: [Mapping] = []
    private let unknownPortLog = RateLimiter()
    /// Ports that guests and firmware use for delays or POST codes; silently ignored.
    private let quietPorts: Set<UInt16> = [0x80, 0xED]

    /// Maps `count` ports from `base` to `device`; an empty, overflowing or overlapping range
    /// is refused, naming both devices.
    func register(_ device: PortDevice, name: String, base: UInt16, count: UInt16) throws {
        let mapping = Mapping(name: name, base: base, count: count, device: device)
        guard count > 0, Int(base) + Int(count) <= 0x10000 else {
            throw ConfigurationError("\(name): no valid I/O port range at 0x\(String(base, radix: 16)) with \(count) ports")
        }
        if let other = mappings.first(where: { Int(base) < Int($0.base) + Int($0.count) && Int($0.base) < Int(base) + Int(count) }) {
            throw ConfigurationError("\(name): I/O ports \(mapping.range) overlap \(other.name) at \(other.range)")
        }
        mappings.append(mapping)
    }

    private func mapping(for port: UInt16) -> Mapping? {
        mappings.first { port >= $0.base && port - $0.base < $0.count }
    }

    /// One exit may carry a string instruction (`rep outsb`): `count` accesses of `size` bytes.
    func write(port: UInt16, size: Int, count: Int, data: UnsafeRawBufferPointer) {
        guard let mapping = mapping(for: port) else {
            if !quietPorts.contains(port) {
                unknownPortLog.log("guest wrote \(size) byte(s) to unknown I/O port 0x\(String(port, radix: 16)); ignored")
            }
            return
        }
        mapping.device.portWrite(offset: port - mapping.base, size: size, count: count, from: data)
    }

    /// The ports a vCPU bridge may serve on its own now, and how (VcpuBridge).
    func bridgePorts() -> [(port: UInt16, access: PortBridgeAccess)] {
        var ports: [(port: UInt16, access: PortBridgeAccess)] = []
        for mapping in mappings {
            for offset in 0..<mapping.count {
                let access = mapping.device.bridgeAccess(offset: offset)
                if access != .none { ports.append((mapping.base + offset, access)) }
            }
        }
        return ports
    }

    func read(port: UInt16, size: Int, count: Int, data: UnsafeMutableRawBufferPointer) {
        guard let mapping = mapping(for: port) else {
            data.initializeMemory(as: UInt8.self, repeating: 0xFF)
            if !quietPorts.contains(port) {
                unknownPortLog.log("guest read \(size) byte(s) from unknown I/O port 0x\(String(port, radix: 16)); returned 0xff")
            }
            return
        }
        for i in 0..<count {
            mapping.device.portRead(offset: port - mapping.base, into: UnsafeMutableRawBufferPointer(rebasing: data[i * size..<(i + 1) * size]))
        }
    }
}
