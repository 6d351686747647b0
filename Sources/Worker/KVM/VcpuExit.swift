/// Why KVM_RUN returned to user space. Buffers point into the vCPU's `kvm_run` page and are
/// valid only until the next `run()`; `ioIn`/`mmioRead` buffers are filled by the device.
enum VcpuExit {
    case ioOut(port: UInt16, size: Int, count: Int, data: UnsafeRawBufferPointer)
    case ioIn(port: UInt16, size: Int, count: Int, data: UnsafeMutableRawBufferPointer)
    case mmioRead(address: UInt64, data: UnsafeMutableRawBufferPointer)
    case mmioWrite(address: UInt64, data: UnsafeRawBufferPointer)
    /// Only without an in-kernel LAPIC; with ours, HLT is handled inside KVM.
    case hlt
    /// Triple fault or a guest-requested reset.
    case shutdown
    case failEntry(hardwareReason: UInt64)
    /// Most often an instruction KVM's emulator cannot handle.
    case internalError(suberror: UInt32)
    case systemEvent(type: UInt32)
    /// A signal (our kick) or `immediate_exit` ended KVM_RUN before or during guest execution.
    case interrupted
    case unknown(reason: UInt32)
}
