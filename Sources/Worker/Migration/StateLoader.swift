import Shared

/// Loads a state stream into a VM created for an incoming migration (vCPUs not yet run).
/// Guest RAM is read straight into the RAM blocks; other sections land in a reused buffer.
final class StateLoader {
    private unowned let machine: Machine
    private var scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)
    /// Set by a 'ram.at' section: where the next section, 'ram.data', goes.
    private var pendingRAM: (block: RamBlock, offset: Int, length: Int)?
    /// The stream said that vCPU and platform state come through a vCPU bridge (VcpuBridge):
    /// the caller must take them over from it.
    private(set) var vcpusThroughBridge = false

    init(machine: Machine) { self.machine = machine }

    deinit { scratch.deallocate() }

    /// Returns the description of the VM the stream came from.
    func load(from reader: StateReader) throws -> MachineDescription {
        guard let first = try reader.nextSection() else { throw StateFormatError.malformed("the state stream holds no sections") }
        var incoming = try MachineDescription.decode(first)
        if let difference = machine.describe(copying: { _ in true }, wasRunning: false).mismatch(with: incoming) {
            throw ConfigurationError("incoming migration refused: \(difference)")
        }
        var restoredVcpus = Set<Int>()
        var platform: PlatformState?
        while let header = try reader.nextSection(into: { name, _, length in try self.buffer(for: name, length: length) }) {
            if pendingRAM != nil {
                throw StateFormatError.malformed("section 'ram.at' is not followed by 'ram.data'")
            }
            switch header.name {
            case Machine.ramDataSection:
                continue  // already in place
            case Machine.ramHeaderSection:
                pendingRAM = try ramTarget(section(header))
            case RamStreamer.zeroSection:
                try zeroRAM(section(header))
            case Machine.runStateSection:
                incoming.wasRunning = try Machine.decodeRunState(section(header))
            case VcpuBridge.sectionName:
                guard header.version == VcpuBridge.sectionVersion, header.length == 0 else {
                    throw StateFormatError.malformed("section '\(header.name)' has version \(header.version) and \(header.length) bytes; this cprvmm reads version \(VcpuBridge.sectionVersion), empty")
                }
                vcpusThroughBridge = true
            case CPUIDState.sectionName:
                try adoptCPUID(try CPUIDState.decode(section(header), vcpuLimit: machine.vcpus.count))
            case PlatformState.sectionName:
                platform = try PlatformState.decode(section(header))
            case let name where machine.devices.device(forSection: name) != nil:
                try machine.devices.load(section(header))
            case let name where name.hasPrefix("cpu."):
                guard let index = Int(name.dropFirst(4)), machine.vcpus.indices.contains(index), !restoredVcpus.contains(index) else {
                    throw StateFormatError.malformed("unexpected section '\(name)'")
                }
                try VcpuState.decode(section(header)).restore(to: machine.vcpus[index].vcpu)
                restoredVcpus.insert(index)
            default:
                throw StateFormatError.malformed("unknown section '\(header.name)' (saved by a newer cprvmm?)")
            }
        }
        guard pendingRAM == nil else { throw StateFormatError.malformed("the stream ends after 'ram.at' without its data") }
        if vcpusThroughBridge {
            guard restoredVcpus.isEmpty, platform == nil else {
                throw StateFormatError.malformed("the stream holds vCPU state and says it comes through a vCPU bridge")
            }
            return incoming
        }
        guard restoredVcpus.count == machine.vcpus.count else {
            throw StateFormatError.malformed("the stream holds state for \(restoredVcpus.count) of \(machine.vcpus.count) vCPUs")
        }
        guard let platform else { throw StateFormatError.malformed("the stream lacks section '\(PlatformState.sectionName)'") }
        // Interrupt controllers, PIT and clock last: the clock then starts from the saved time.
        try platform.restore(to: machine.vm)
        return incoming
    }

    /// The guest keeps the CPU it saw: this host's KVM must be able to show it, at the same
    /// TSC rate (unless the operator accepts another), and then each vCPU gets its old table.
    private func adoptCPUID(_ state: CPUIDState) throws {
        if let difference = state.mismatch(host: machine.hostCPUID, hostTSCKHz: machine.hostTSCKHz,
                                           allowTSCMismatch: machine.config.allowTSCMismatch) {
            throw ConfigurationError("incoming migration refused: \(difference)")
        }
        for (thread, table) in zip(machine.vcpus, state.vcpus) {
            try thread.vcpu.setCPUID(table.map(\.kvm))
        }
        machine.guestCPUID = state.vcpus
    }

    private func buffer(for name: String, length: Int) throws -> UnsafeMutableRawBufferPointer {
        if name == Machine.ramDataSection {
            guard let target = pendingRAM, target.length == length else {
                throw StateFormatError.malformed("section 'ram.data' of \(length) bytes without a matching 'ram.at'")
            }
            pendingRAM = nil
            return UnsafeMutableRawBufferPointer(start: target.block.host + target.offset, count: length)
        }
        if scratch.count < length {
            scratch.deallocate()
            scratch = .allocate(byteCount: length, alignment: 16)
        }
        return UnsafeMutableRawBufferPointer(rebasing: scratch[..<length])
    }

    private func section(_ header: (name: String, version: UInt32, length: Int)) -> StateSection {
        StateSection(name: header.name, version: header.version, payload: Array(scratch[..<header.length]))
    }

    /// A `ram.zero` marker: a range the source found zero after sending it earlier (pre-copy).
    private func zeroRAM(_ section: StateSection) throws {
        guard section.version == RamStreamer.zeroSectionVersion else {
            throw StateFormatError.malformed("section '\(section.name)' has version \(section.version); this cprvmm reads version \(RamStreamer.zeroSectionVersion)")
        }
        var decoder = StateDecoder(section.payload, section: section.name)
        let blockIndex = Int(try decoder.u32())
        let offset = try decoder.u64()
        let length = try decoder.u64()
        try decoder.finish()
        let blocks = machine.memory.blocks
        guard blocks.indices.contains(blockIndex), offset <= blocks[blockIndex].size, length <= blocks[blockIndex].size - offset else {
            throw StateFormatError.malformed("section 'ram.zero': block \(blockIndex) offset \(offset) length \(length) lies outside guest RAM")
        }
        (blocks[blockIndex].host + Int(offset)).initializeMemory(as: UInt8.self, repeating: 0, count: Int(length))
    }

    private func ramTarget(_ section: StateSection) throws -> (block: RamBlock, offset: Int, length: Int) {
        var decoder = StateDecoder(section.payload, section: section.name)
        let blockIndex = Int(try decoder.u32())
        let offset = try decoder.u64()
        let length = Int(try decoder.u32())
        try decoder.finish()
        let blocks = machine.memory.blocks
        guard blocks.indices.contains(blockIndex), length <= Machine.ramChunkSize,
              offset <= blocks[blockIndex].size, UInt64(length) <= blocks[blockIndex].size - offset else {
            throw StateFormatError.malformed("section 'ram.at': block \(blockIndex) offset \(offset) length \(length) lies outside guest RAM")
        }
        return (blocks[blockIndex], Int(offset), length)
    }
}
