/// QEMU's isa-debug-exit (`-device isa-debug-exit`, iobase 0x501 and 2 ports by default): a
/// guest write of V ends the VM with process exit status (V << 1) | 1, exactly as QEMU does, so
/// test harnesses work unchanged. Present only when asked for, as in QEMU: otherwise any
/// guest could end its VM with a chosen status through a port write.
final class DebugExit: PortDevice {
    let ioBase: UInt16
    let ioSize: UInt16
    /// Called with the value written and the exit status it means.
    private let onExit: (UInt32, Int32) -> Void

    init(ioBase: UInt16, ioSize: UInt16, onExit: @escaping (UInt32, Int32) -> Void) {
        self.ioBase = ioBase
        self.ioSize = ioSize
        self.onExit = onExit
    }

    func portRead(offset: UInt16, into data: UnsafeMutableRawBufferPointer) {
        data.initializeMemory(as: UInt8.self, repeating: 0xFF)
    }

    func portWrite(offset: UInt16, from data: UnsafeRawBufferPointer) {
        var value: UInt32 = 0
        for (i, byte) in data.prefix(4).enumerated() { value |= UInt32(byte) << (8 * i) }
        onExit(value, DebugExit.exitStatus(for: value))
    }

    /// Process exit statuses are 8 bits, as they are for QEMU.
    static func exitStatus(for value: UInt32) -> Int32 { Int32(truncatingIfNeeded: ((value << 1) | 1) & 0xFF) }
}

extension DebugExit: Device {
    var id: String { "isa-debug-exit" }
    var topology: String { "isa-debug-exit iobase=0x\(String(ioBase, radix: 16)) iosize=0x\(String(ioSize, radix: 16))" }

    func attach(to buses: Buses) throws {
        try buses.ports.register(self, name: "-device isa-debug-exit", base: ioBase, count: ioSize)
    }
}
