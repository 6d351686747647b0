/// A device on the x86 I/O port bus. `offset` is relative to the device's base port.
/// Called from vCPU threads, possibly several at once: devices lock their own state.
protocol PortDevice: AnyObject {
    func portRead(offset: UInt16, into data: UnsafeMutableRawBufferPointer)
    func portWrite(offset: UInt16, from data: UnsafeRawBufferPointer)
    /// `count` consecutive writes of `size` bytes each: one string instruction (`rep outsb`).
    func portWrite(offset: UInt16, size: Int, count: Int, from data: UnsafeRawBufferPointer)
}

extension PortDevice {
    func portWrite(offset: UInt16, size: Int, count: Int, from data: UnsafeRawBufferPointer) {
        for i in 0..<count {
            portWrite(offset: offset, from: UnsafeRawBufferPointer(rebasing: data[i * size..<(i + 1) * size]))
        }
    }
}
