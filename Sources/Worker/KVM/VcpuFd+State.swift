import CKVM

/// The vCPU state ioctls migration and live update need. Call them only while the vCPU is
/// paused (outside KVM_RUN): its state is then consistent, any in-flight I/O completed.
extension VcpuFd {
    private func get<T>(_ request: UInt, _ name: String, _ value: inout T) throws(SystemError) {
        _ = try withUnsafeMutablePointer(to: &value) { pointer throws(SystemError) in
            try ioctlChecked(fd, request, UnsafeMutableRawPointer(pointer), name)
        }
    }

    func getXSave() throws(SystemError) -> ckvm_xsave {
        var value = ckvm_xsave()
        try get(CKVM_GET_XSAVE, "KVM_GET_XSAVE", &value)
        return value
    }

    func setXSave(_ state: ckvm_xsave) throws(SystemError) {
        var value = state
        try get(CKVM_SET_XSAVE, "KVM_SET_XSAVE", &value)
    }

    func getXCRs() throws(SystemError) -> kvm_xcrs {
        var value = kvm_xcrs()
        try get(CKVM_GET_XCRS, "KVM_GET_XCRS", &value)
        return value
    }

    func setXCRs(_ state: kvm_xcrs) throws(SystemError) {
        var value = state
        try get(CKVM_SET_XCRS, "KVM_SET_XCRS", &value)
    }

    func getLAPIC() throws(SystemError) -> kvm_lapic_state {
        var value = kvm_lapic_state()
        try get(CKVM_GET_LAPIC, "KVM_GET_LAPIC", &value)
        return value
    }

    func setLAPIC(_ state: kvm_lapic_state) throws(SystemError) {
        var value = state
        try get(CKVM_SET_LAPIC, "KVM_SET_LAPIC", &value)
    }

    func getEvents() throws(SystemError) -> kvm_vcpu_events {
        var value = kvm_vcpu_events()
        try get(CKVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS", &value)
        return value
    }

    func setEvents(_ state: kvm_vcpu_events) throws(SystemError) {
        var value = state
        try get(CKVM_SET_VCPU_EVENTS, "KVM_SET_VCPU_EVENTS", &value)
    }

    func getDebugRegisters() throws(SystemError) -> kvm_debugregs {
        var value = kvm_debugregs()
        try get(CKVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS", &value)
        return value
    }

    func setDebugRegisters(_ state: kvm_debugregs) throws(SystemError) {
        var value = state
        try get(CKVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS", &value)
    }

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
