import CBridge
import CKVM
import Shared

/// Every kind of section this build writes into a state stream and reads back, with its
/// version (each reader accepts exactly its own version today). A live update's probe
/// (CPRExecProbe) compares the new binary's table with this one before the guest is paused.
enum StateSections {
    /// Section name (`cpu` for every `cpu.N`) → version: what a live update writes.
    static let versions: [String: UInt32] = [
        MachineDescription.sectionName: MachineDescription.sectionVersion,
        CPUIDState.sectionName: CPUIDState.sectionVersion,
        "cpu": VcpuState.sectionVersion,
        PlatformState.sectionName: PlatformState.sectionVersion,
        Serial16550.sectionName: Serial16550.sectionVersion,
        Machine.ramHeaderSection: Machine.ramSectionVersion,
        Machine.ramDataSection: Machine.ramSectionVersion,
        VcpuBridge.sectionName: VcpuBridge.sectionVersion,
    ]

    /// Sections only a pre-copy migration to another process writes, never a live update: a
    /// live update's probe does not ask for them, so an older binary (a downgrade) that does
    /// not know them still takes the VM over.
    static let precopyVersions: [String: UInt32] = [
        RamStreamer.zeroSection: RamStreamer.zeroSectionVersion,
        Machine.runStateSection: Machine.runStateSectionVersion,
    ]

    /// Section name → every version this build reads (a probe's answer): the written one, and
    /// older ones a reader still takes.
    static var readableVersions: [String: [UInt32]] {
        var readable = versions.merging(precopyVersions) { current, _ in current }.mapValues { [$0] }
        readable[MachineDescription.sectionName] = MachineDescription.readableVersions
        return readable
    }

    /// The CPR state's sections (the handoff apart from the VM state).
    static let cprVersions: [String: UInt32] = [
        CPRState.sectionName: CPRState.sectionVersion,
        CPRState.recordSectionName: CPRState.recordSectionVersion,
    ]

    /// The layout version of the vCPU bridges' shared region (cbridge.h).
    static let bridgeRegionVersion = UInt32(CBRIDGE_VERSION)
}
