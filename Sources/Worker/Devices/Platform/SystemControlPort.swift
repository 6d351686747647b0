/// Port 0x92, "System Control Port A" (PS/2 fast A20 and fast reset). A20 is always on here
/// (reads show it enabled, as on machines that cannot turn it off); writing bit 0 asks for a
/// reset, which the machine decides on.
final class SystemControlPort: PortDevice, Device {
    static let port: UInt16 = 0x92
    private let onReset: (String) -> Void

    init(onReset: @escaping (String) -> Void) { self.onReset = onReset }

    func portRead(offset: UInt16, into data: UnsafeMutableRawBufferPointer) {
        data.initializeMemory(as: UInt8.self, repeating: 0)
        data[0] = 0x02  // A20 enabled
    }

    func portWrite(offset: UInt16, from data: UnsafeRawBufferPointer) {
        if data[0] & 0x01 != 0 { onReset("the guest asked for a reset through port 0x92") }
    }

    /// Reads are constant, and a write without the reset bit changes nothing.
    func bridgeAccess(offset: UInt16) -> PortBridgeAccess { PortBridgeAccess(constantRead: 0x02) }

    var id: String { "port92" }
    var topology: String { "port92" }

    func attach(to buses: Buses) throws {
        try buses.ports.register(self, name: "port 0x92", base: SystemControlPort.port, count: 1)
    }
}
