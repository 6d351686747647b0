import Shared

/// Saving the whole VM to a state stream and loading it into a freshly created VM.
extension Machine {
    /// 64 KiB: small enough that all-zero RAM is skipped at a fine grain, large enough that
    /// per-chunk framing stays below 0.1% of the stream.
    static let ramChunkSize = 64 << 10
    static let ramHeaderSection = "ram.at"
    static let ramDataSection = "ram.data"
    static let ramSectionVersion: UInt32 = 1

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
                   vcpusThroughBridge: Bool = false, progress: (UInt64) -> Void = { _ in }) throws {
        try writer.writeSection(MachineDescription.sectionName, version: MachineDescription.sectionVersion,
                                payload: describe(copying: copied, wasRunning: wasRunning).encode())
        try writer.writeSection(CPUIDState.sectionName, version: CPUIDState.sectionVersion,
                                payload: CPUIDState(tscKHz: hostTSCKHz, vcpus: guestCPUID).encode())
        TestStopPoint.reached("saving")
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
        var ramWritten: UInt64 = 0
        for (blockIndex, block) in memory.blocks.enumerated() where copied(block) {
            var offset = 0
            while offset < Int(block.size) {
                let length = min(Machine.ramChunkSize, Int(block.size) - offset)
                let chunk = UnsafeRawBufferPointer(start: block.host + offset, count: length)
                // A fresh target's RAM reads as zero: all-zero chunks need not travel.
                if !chunk.allSatisfy({ $0 == 0 }) {
                    var header = StateEncoder()
                    header.u32(UInt32(blockIndex))
                    header.u64(UInt64(offset))
                    header.u32(UInt32(length))
                    try writer.writeSection(Machine.ramHeaderSection, version: Machine.ramSectionVersion, payload: header.bytes)
                    try writer.writeSection(Machine.ramDataSection, version: Machine.ramSectionVersion, payload: chunk)
                    ramWritten += UInt64(length)
                }
                offset += length
                progress(ramWritten)
            }
        }
        try writer.finish()
    }
}
