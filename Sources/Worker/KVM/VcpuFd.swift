import CKVM
import Glibc

/// One KVM vCPU: its fd and its shared `kvm_run` page.
/// Used by exactly one vCPU thread, except `requestImmediateExit`, which any thread may call.
final class VcpuFd {
    let fd: Int32
    let index: Int
    // The kvm_run page is shared with the kernel; KVM_RUN reads immediate_exit from it and
    // writes exit data into it, so this pointer stays valid for the life of the fd.
    private let run: UnsafeMutablePointer<kvm_run>
    private let mmapSize: Int

    init(fd: Int32, index: Int, mmapSize: Int) throws(SystemError) {
        let mapping = mmap(nil, mmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let mapping, mapping != MAP_FAILED else { throw SystemError("mmap kvm_run", errno: errno) }
        self.fd = fd
        self.index = index
        self.mmapSize = mmapSize
        self.run = mapping.bindMemory(to: kvm_run.self, capacity: 1)
    }

    deinit {
        munmap(run, mmapSize)
        close(fd)
    }

    /// The kvm_run page, for the vCPU bridge that runs this vCPU across a live update's exec.
    var runPage: UnsafeMutableRawPointer { UnsafeMutableRawPointer(run) }

    /// Makes the next (or current, together with a signal) KVM_RUN return at once with EINTR.
    /// A plain store: the kernel reads the byte on entry; the signal covers a vCPU already inside.
    func requestImmediateExit(_ value: Bool) {
        // Volatile-enough: the page is shared with the kernel, which reads it at KVM_RUN entry.
        run.pointee.immediate_exit = value ? 1 : 0
    }

    /// Enters the guest until the next exit that needs user space.
    func runOnce() throws(SystemError) -> VcpuExit {
        if ckvm_ioctl_value(fd, CKVM_RUN, 0) < 0 {
            let code = errno
            if code == EINTR || code == EAGAIN { return .interrupted }
            throw SystemError("KVM_RUN on vCPU \(index)", errno: code)
        }
        switch run.pointee.exit_reason {
        case CKVM_EXIT_IO:
            let io = run.pointee.io
            // KVM keeps size * count within its PIO page of the mapping.
            let length = Int(io.size) * Int(io.count)
            let data = UnsafeMutableRawBufferPointer(start: ckvm_run_io_data(run), count: length)
            if io.direction == CKVM_EXIT_IO_OUT {
                return .ioOut(port: io.port, size: Int(io.size), count: Int(io.count), data: UnsafeRawBufferPointer(data))
            }
            return .ioIn(port: io.port, size: Int(io.size), count: Int(io.count), data: data)
        case CKVM_EXIT_MMIO:
            let address = run.pointee.mmio.phys_addr
            let length = Int(run.pointee.mmio.len)
            let isWrite = run.pointee.mmio.is_write != 0
            // The 8-byte data array lives inside the union in the shared page.
            let data = UnsafeMutableRawBufferPointer(start: ckvm_run_mmio_data(run), count: min(length, 8))
            return isWrite ? .mmioWrite(address: address, data: UnsafeRawBufferPointer(data)) : .mmioRead(address: address, data: data)
        case CKVM_EXIT_HLT: return .hlt
        case CKVM_EXIT_SHUTDOWN: return .shutdown
        case CKVM_EXIT_INTR: return .interrupted
        case CKVM_EXIT_FAIL_ENTRY: return .failEntry(hardwareReason: run.pointee.fail_entry.hardware_entry_failure_reason)
        case CKVM_EXIT_INTERNAL_ERROR: return .internalError(suberror: run.pointee.internal.suberror)
        case CKVM_EXIT_SYSTEM_EVENT: return .systemEvent(type: run.pointee.system_event.type)
        case let reason: return .unknown(reason: reason)
        }
    }

    // MARK: State accessors used by boot and diagnostics.

    func getRegisters() throws(SystemError) -> kvm_regs {
        var regs = kvm_regs()
        try ioctlChecked(fd, CKVM_GET_REGS, &regs, "KVM_GET_REGS")
        return regs
    }

    func setRegisters(_ regs: kvm_regs) throws(SystemError) {
        var copy = regs
        try ioctlChecked(fd, CKVM_SET_REGS, &copy, "KVM_SET_REGS")
    }

    func getSpecialRegisters() throws(SystemError) -> kvm_sregs {
        var sregs = kvm_sregs()
        try ioctlChecked(fd, CKVM_GET_SREGS, &sregs, "KVM_GET_SREGS")
        return sregs
    }

    func setSpecialRegisters(_ sregs: kvm_sregs) throws(SystemError) {
        var copy = sregs
        try ioctlChecked(fd, CKVM_SET_SREGS, &copy, "KVM_SET_SREGS")
    }

    func setCPUID(_ entries: [kvm_cpuid_entry2]) throws(SystemError) {
        var table = ckvm_cpuid2()
        table.nent = UInt32(min(entries.count, Int(CKVM_MAX_CPUID_ENTRIES)))
        withUnsafeMutableBytes(of: &table.entries) { raw in
            let slots = raw.bindMemory(to: kvm_cpuid_entry2.self)
            for (i, entry) in entries.prefix(slots.count).enumerated() { slots[i] = entry }
        }
        try ioctlChecked(fd, CKVM_SET_CPUID2, &table, "KVM_SET_CPUID2")
    }

    func getMPState() throws(SystemError) -> UInt32 {
        var state = kvm_mp_state()
        try ioctlChecked(fd, CKVM_GET_MP_STATE, &state, "KVM_GET_MP_STATE")
        return state.mp_state
    }

    func setMPState(_ value: UInt32) throws(SystemError) {
        var state = kvm_mp_state(mp_state: value)
        try ioctlChecked(fd, CKVM_SET_MP_STATE, &state, "KVM_SET_MP_STATE")
    }

    /// The guest TSC frequency in kHz (what the built-in guest paces its ticks with).
    func tscKHz() throws(SystemError) -> UInt32 {
        UInt32(try ioctlChecked(fd, CKVM_GET_TSC_KHZ, value: 0, "KVM_GET_TSC_KHZ"))
    }
}
