/// QEMU's isa-debug-exit (iobase 0x501, 2 ports): a guest write of V ends the VM with
/// process exit status (V << 1) | 1, exactly as QEMU does, so test harnesses work unchanged.
final class DebugExit: PortDevice {
    static let basePort: UInt16 = 0x501
    static let portCount: UInt16 = 2

    private let onExit: (Int32) -> Void

    init(onExit: @escaping (Int32) -> Void) { self.onExit = onExit }

    func portRead(offset: UInt16, into data: UnsafeMutableRawBufferPointer) {
        data.initializeMemory(as: UInt8.self, repeating: 0xFF)
    }

    func portWrite(offset: UInt16, from data: UnsafeRawBufferPointer) {
        var value: UInt32 = 0
        for (i, byte) in data.prefix(4).enumerated() { value |= UInt32(byte) << (8 * i) }
        onExit(DebugExit.exitStatus(for: value))
    }

    /// Process exit statuses are 8 bits, as they are for QEMU.
    static func exitStatus(for value: UInt32) -> Int32 { Int32(truncatingIfNeeded: ((value << 1) | 1) & 0xFF) }
}
