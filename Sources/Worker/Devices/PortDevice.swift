/// A device on the x86 I/O port bus. `offset` is relative to the device's base port.
/// Called from vCPU threads, possibly several at once: devices lock their own state.
protocol PortDevice: AnyObject {
    func portRead(offset: UInt16, into data: UnsafeMutableRawBufferPointer)
    func portWrite(offset: UInt16, from data: UnsafeRawBufferPointer)
    /// `count` consecutive writes of `size` bytes each: one string instruction (`rep outsb`).
    func portWrite(offset: UInt16, size: Int, count: Int, from data: UnsafeRawBufferPointer)
    /// What a vCPU bridge may do at `offset` without the device while its state is frozen
    /// (a live update's exec; VcpuBridge).
    func bridgeAccess(offset: UInt16) -> PortBridgeAccess
}

/// See cbridge.h: a read with no side effect has a constant value while the device is
/// frozen; a write that leaves the device's state unchanged can be logged and performed later.
struct PortBridgeAccess: Equatable {
    var constantRead: UInt8?
    var writeLogged = false
    static let none = PortBridgeAccess(constantRead: nil)
}

extension PortDevice {
    func bridgeAccess(offset: UInt16) -> PortBridgeAccess { .none }

    func portWrite(offset: UInt16, size: Int, count: Int, from data: UnsafeRawBufferPointer) {
        for i in 0..<count {
            portWrite(offset: offset, from: UnsafeRawBufferPointer(rebasing: data[i * size..<(i + 1) * size]))
        }
    }
}
