import CKVM
import Shared

/// Everything KVM holds for one vCPU, as migration saves it: registers, special registers,
/// FPU/SSE (XSAVE area), XCRs, every readable MSR KVM lists (TSC included, so guest time
/// read from the TSC continues), the LAPIC, pending events, debug registers and MP state.
/// Kernel structs are stored as their raw bytes: the format is for the same architecture and
/// a kernel with the same struct layouts (the section version changes if that ever differs).
struct VcpuState {
    static let sectionVersion: UInt32 = 1
    static func sectionName(_ index: Int) -> String { "cpu.\(index)" }

    var regs: kvm_regs
    var sregs: kvm_sregs
    var xsave: ckvm_xsave
    var xcrs: kvm_xcrs
    var msrs: [(index: UInt32, value: UInt64)]
    var lapic: kvm_lapic_state
    var events: kvm_vcpu_events
    var debugRegisters: kvm_debugregs
    var mpState: UInt32

    static func capture(_ vcpu: VcpuFd, msrIndices: [UInt32]) throws(SystemError) -> VcpuState {
        VcpuState(
            regs: try vcpu.getRegisters(), sregs: try vcpu.getSpecialRegisters(), xsave: try vcpu.getXSave(),
            xcrs: try vcpu.getXCRs(), msrs: try vcpu.getMSRs(msrIndices), lapic: try vcpu.getLAPIC(),
            events: try vcpu.getEvents(), debugRegisters: try vcpu.getDebugRegisters(), mpState: try vcpu.getMPState())
    }

    /// Restores in the order KVM needs (Firecracker's): MP state and registers first, the LAPIC
    /// before the MSRs that depend on it (TSC deadline), pending events last.
    func restore(to vcpu: VcpuFd) throws {
        try vcpu.setMPState(mpState)
        try vcpu.setRegisters(regs)
        try vcpu.setSpecialRegisters(sregs)
        try vcpu.setXSave(try XSaveArea.adapted(xsave))
        try vcpu.setXCRs(xcrs)
        try vcpu.setDebugRegisters(debugRegisters)
        try vcpu.setLAPIC(lapic)
        try vcpu.setMSRs(msrs)
        try vcpu.setEvents(events)
    }

    func encode() -> [UInt8] {
        var encoder = StateEncoder()
        encoder.raw(regs)
        encoder.raw(sregs)
        encoder.raw(xsave)
        encoder.raw(xcrs)
        encoder.u32(UInt32(msrs.count))
        for msr in msrs {
            encoder.u32(msr.index)
            encoder.u64(msr.value)
        }
        encoder.raw(lapic)
        encoder.raw(events)
        encoder.raw(debugRegisters)
        encoder.u32(mpState)
        return encoder.bytes
    }

    static func decode(_ section: StateSection) throws -> VcpuState {
        guard section.version == sectionVersion else {
            throw StateFormatError.malformed("section '\(section.name)' has version \(section.version); this cprvmm reads version \(sectionVersion)")
        }
        var decoder = StateDecoder(section.payload, section: section.name)
        let regs = try decoder.raw(kvm_regs.self)
        let sregs = try decoder.raw(kvm_sregs.self)
        let xsave = try decoder.raw(ckvm_xsave.self)
        let xcrs = try decoder.raw(kvm_xcrs.self)
        let count = Int(try decoder.u32())
        guard count <= 4096 else { throw StateFormatError.malformed("section '\(section.name)': \(count) MSRs is absurd") }
        var msrs: [(index: UInt32, value: UInt64)] = []
        for _ in 0..<count { msrs.append((try decoder.u32(), try decoder.u64())) }
        let state = VcpuState(
            regs: regs, sregs: sregs, xsave: xsave, xcrs: xcrs, msrs: msrs, lapic: try decoder.raw(kvm_lapic_state.self),
            events: try decoder.raw(kvm_vcpu_events.self), debugRegisters: try decoder.raw(kvm_debugregs.self),
            mpState: try decoder.u32())
        try decoder.finish()
        return state
    }
}
