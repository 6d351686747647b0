/// Routes port I/O exits to devices. Unknown ports read as all-ones (an empty ISA bus) and
/// are logged, rate-limited, and otherwise ignored: probing guests are normal (kvmtool does the same).
final class IoBus {
    private struct Mapping {
        let base: UInt16
        let count: UInt16
        let device: PortDevice
    }

    private var mappings: [Mapping] = []
    private let unknownPortLog = RateLimiter()
    /// Ports that guests and firmware use for delays or POST codes; silently ignored.
    private let quietPorts: Set<UInt16> = [0x80, 0xED]

    func register(_ device: PortDevice, base: UInt16, count: UInt16) {
        precondition(!mappings.contains { base < $0.base + $0.count && $0.base < base + count }, "overlapping port ranges")
        mappings.append(Mapping(base: base, count: count, device: device))
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
