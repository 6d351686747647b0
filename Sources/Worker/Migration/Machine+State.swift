import Shared

/// Saving the whole VM to a state stream and loading it into a freshly created VM.
extension Machine {
    /// 64 KiB: small enough that all-zero RAM is skipped at a fine grain, large enough that
    /// per-chunk framing stays below 0.1% of the stream.
    static let ramChunkSize = 64 << 10
    static let ramHeaderSection = "ram.at"
    static let ramDataSection = "ram.data"
    static let ramSectionVersion: UInt32 = 1
    /// Whether the guest ran when the source stopped it for good: a pre-copy stream writes the
    /// machine description while the guest runs, and an operator may stop it before the end.
    static let runStateSection = "run-state"
    static let runStateSectionVersion: UInt32 = 1

    static func decodeRunState(_ section: StateSection) throws -> Bool {
        guard section.version == runStateSectionVersion else {
            throw StateFormatError.malformed("section '\(section.name)' has version \(section.version); this cprvmm reads version \(runStateSectionVersion)")
        }
        var decoder = StateDecoder(section.payload, section: section.name)
        let running = try decoder.bool()
        try decoder.finish()
        return running
    }

    func saveRunState(to writer: StateWriter, running: Bool) throws {
        var encoder = StateEncoder()
        encoder.bool(running)
        try writer.writeSection(Machine.runStateSection, version: Machine.runStateSectionVersion, payload: encoder.bytes)
    }

    /// KVM_GET_MSR_INDEX_LIST, fetched once: a live update asks before it pauses the guest.
    func cacheMSRIndexList() throws(SystemError) {
        if msrIndexList == nil { msrIndexList = try kvm.msrIndexList() }
    }

    func describe(copying copied: (RamBlock) -> Bool, wasRunning: Bool) -> MachineDescription {
        MachineDescription(
            vcpuCount: vcpus.count,
            blocks: memory.blocks.map {
                .init(name: $0.name, size: $0.size, backing: $0.backing.name, shared: $0.shared, copied: copied($0), adopted: $0.adopted)
            },
            devices: devices.topology, wasRunning: wasRunning, vmStarted: vmStarted)
    }

    /// Writes the machine description, every vCPU, the in-kernel devices, every device's section
    /// and the RAM blocks `copied` selects. The machine must be paused (`pause()`). `progress` gets RAM bytes written.
    /// `vcpusThroughBridge`: the guest runs on in vCPU bridges, which hand vCPU and in-kernel
    /// device state over later (VcpuBridge); the stream says so instead of holding them.
    func saveState(to writer: StateWriter, copying copied: (RamBlock) -> Bool, wasRunning: Bool,
                   vcpusThroughBridge: Bool = false, progress: @escaping (UInt64) -> Void = { _ in }) throws {
        try saveDescription(to: writer, copying: copied, wasRunning: wasRunning)
        TestStopPoint.reached("saving")
        try saveVcpusAndDevices(to: writer, vcpusThroughBridge: vcpusThroughBridge)
        let ram = RamStreamer(writer: writer, blocks: blocksToCopy(copied), guestRuns: false)
        let start = writer.bytesWritten
        ram.pace = { progress($0 - start) }
        try ram.sendAll()
        try writer.finish()
    }

    /// The blocks `copied` selects, with their index in `memory.blocks` (what the stream names).
    func blocksToCopy(_ copied: (RamBlock) -> Bool) -> [(index: Int, block: RamBlock)] {
        memory.blocks.enumerated().filter { copied($0.element) }.map { ($0.offset, $0.element) }
    }

    /// The first sections of every stream: what the target checks before it takes anything.
    func saveDescription(to writer: StateWriter, copying copied: (RamBlock) -> Bool, wasRunning: Bool) throws {
        try writer.writeSection(MachineDescription.sectionName, version: MachineDescription.sectionVersion,
                                payload: describe(copying: copied, wasRunning: wasRunning).encode())
        try writer.writeSection(CPUIDState.sectionName, version: CPUIDState.sectionVersion,
                                payload: CPUIDState(tscKHz: hostTSCKHz, vcpus: guestCPUID).encode())
    }

    /// Every vCPU, the in-kernel devices (or the note that vCPU bridges carry both) and every
    /// device's section. The machine must be paused.
    func saveVcpusAndDevices(to writer: StateWriter, vcpusThroughBridge: Bool) throws {
        if vcpusThroughBridge {
            try writer.writeSection(VcpuBridge.sectionName, version: VcpuBridge.sectionVersion, payload: [])
        } else {
            try cacheMSRIndexList()
            let msrIndices = msrIndexList ?? []
            for (index, thread) in vcpus.enumerated() {
                let state = try VcpuState.capture(thread.vcpu, msrIndices: msrIndices)
                try writer.writeSection(VcpuState.sectionName(index), version: VcpuState.sectionVersion, payload: state.encode())
            }
            try writer.writeSection(PlatformState.sectionName, version: PlatformState.sectionVersion, payload: try PlatformState.capture(vm).encode())
        }
        try devices.save(to: writer)
    }
}
