import CKVM

/// The vCPU state ioctls migration and live update need. Call them only while the vCPU is
/// paused (outside KVM_RUN): its state is then consistent, any in-flight I/O completed.
extension VcpuFd {
    /// One state ioctl on a value of type T: in for the GET_* requests, out for the SET_* ones.
    private func transfer<T>(_ request: UInt, _ name: String, _ value: inout T) throws(SystemError) {
        _ = try withUnsafeMutablePointer(to: &value) { pointer throws(SystemError) in
            try ioctlChecked(fd, request, UnsafeMutableRawPointer(pointer), name)
        }
    }

    private func read<T>(_ request: UInt, _ name: String, _ initial: T) throws(SystemError) -> T {
        var value = initial
        try transfer(request, name, &value)
        return value
    }

    private func write<T>(_ request: UInt, _ name: String, _ state: T) throws(SystemError) {
        var value = state
        try transfer(request, name, &value)
    }

    func getXSave() throws(SystemError) -> ckvm_xsave { try read(CKVM_GET_XSAVE, "KVM_GET_XSAVE", ckvm_xsave()) }
    func setXSave(_ state: ckvm_xsave) throws(SystemError) { try write(CKVM_SET_XSAVE, "KVM_SET_XSAVE", state) }
    func getXCRs() throws(SystemError) -> kvm_xcrs { try read(CKVM_GET_XCRS, "KVM_GET_XCRS", kvm_xcrs()) }
    func setXCRs(_ state: kvm_xcrs) throws(SystemError) { try write(CKVM_SET_XCRS, "KVM_SET_XCRS", state) }
    func getLAPIC() throws(SystemError) -> kvm_lapic_state { try read(CKVM_GET_LAPIC, "KVM_GET_LAPIC", kvm_lapic_state()) }
    func setLAPIC(_ state: kvm_lapic_state) throws(SystemError) { try write(CKVM_SET_LAPIC, "KVM_SET_LAPIC", state) }
    func getEvents() throws(SystemError) -> kvm_vcpu_events { try read(CKVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS", kvm_vcpu_events()) }
    func setEvents(_ state: kvm_vcpu_events) throws(SystemError) { try write(CKVM_SET_VCPU_EVENTS, "KVM_SET_VCPU_EVENTS", state) }
    func getDebugRegisters() throws(SystemError) -> kvm_debugregs { try read(CKVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS", kvm_debugregs()) }
    func setDebugRegisters(_ state: kvm_debugregs) throws(SystemError) { try write(CKVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS", state) }

    /// Reads the MSRs in `indices`; an MSR KVM lists but cannot read on this host is left out
    /// (KVM_GET_MSRS stops at the first failure and reports how many it read).
    func getMSRs(_ indices: [UInt32]) throws(SystemError) -> [(index: UInt32, value: UInt64)] {
        var result: [(UInt32, UInt64)] = []
        var remaining = indices[...]
        while !remaining.isEmpty {
            var table = ckvm_msrs()
            let batch = Array(remaining.prefix(512))
            table.nmsrs = UInt32(batch.count)
            withUnsafeMutableBytes(of: &table.entries) { raw in
                let entries = raw.bindMemory(to: kvm_msr_entry.self)
                for (i, index) in batch.enumerated() { entries[i] = kvm_msr_entry(index: index, reserved: 0, data: 0) }
            }
            let read = Int(try ioctlChecked(fd, CKVM_GET_MSRS, &table, "KVM_GET_MSRS"))
            withUnsafeBytes(of: &table.entries) { raw in
                let entries = raw.bindMemory(to: kvm_msr_entry.self)
                for i in 0..<read { result.append((entries[i].index, entries[i].data)) }
            }
            remaining = remaining.dropFirst(read < batch.count ? read + 1 : read)  // skip the unreadable one
        }
        return result
    }

    func setMSRs(_ msrs: [(index: UInt32, value: UInt64)]) throws(SystemError) {
        for batchStart in stride(from: 0, to: msrs.count, by: 512) {
            let batch = msrs[batchStart..<min(batchStart + 512, msrs.count)]
            var table = ckvm_msrs()
            table.nmsrs = UInt32(batch.count)
            withUnsafeMutableBytes(of: &table.entries) { raw in
                let entries = raw.bindMemory(to: kvm_msr_entry.self)
                for (i, msr) in batch.enumerated() { entries[i] = kvm_msr_entry(index: msr.index, reserved: 0, data: msr.value) }
            }
            let written = Int(try ioctlChecked(fd, CKVM_SET_MSRS, &table, "KVM_SET_MSRS"))
            guard written == batch.count else {
                let failed = batch[batchStart + written]
                throw SystemError("KVM_SET_MSRS: MSR 0x\(String(failed.index, radix: 16)) was refused", errno: 22)
            }
        }
    }
}
