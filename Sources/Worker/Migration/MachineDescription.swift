import Shared

/// What a state stream was saved from, so a target with a different shape is refused with
/// the difference named, and what the VM's identity is (its start time survives updates).
struct MachineDescription: Equatable {
    static let sectionName = "machine"
    /// Version 2 added the device topology; version 1 streams (no topology) still load.
    static let sectionVersion: UInt32 = 2
    static let readableVersions: [UInt32] = [1, 2]
    static let deviceLimit = 256

    struct Block: Equatable {
        var name: String
        var size: UInt64
        var backing: String
        var shared: Bool
        /// Whether the stream carries this block's contents (cpr-reboot leaves shared files in place).
        var copied: Bool
        /// This side only, not encoded: the block was handed over by a previous image.
        var adopted = false
    }

    var vcpuCount: Int
    var blocks: [Block]
    /// One line per device, "id: kind options" (DeviceRegistry.topology); nil when the
    /// stream predates it (version 1), which skips the device check.
    var devices: [String]?
    var wasRunning: Bool
    var vmStarted: Double

    func encode() -> [UInt8] {
        var encoder = StateEncoder()
        encoder.u32(UInt32(vcpuCount))
        encoder.u32(UInt32(blocks.count))
        for block in blocks {
            encoder.string(block.name)
            encoder.u64(block.size)
            encoder.string(block.backing)
            encoder.bool(block.shared)
            encoder.bool(block.copied)
        }
        encoder.bool(wasRunning)
        encoder.u64(vmStarted.bitPattern)
        let devices = self.devices ?? []
        encoder.u32(UInt32(devices.count))
        for device in devices { encoder.string(device) }
        return encoder.bytes
    }

    static func decode(_ section: StateSection) throws -> MachineDescription {
        guard section.name == sectionName else {
            throw StateFormatError.malformed("the stream starts with section '\(section.name)', expected '\(sectionName)'")
        }
        guard readableVersions.contains(section.version) else {
            throw StateFormatError.malformed("section '\(section.name)' has version \(section.version); this cprvmm reads versions \(readableVersions.map(String.init).joined(separator: ", "))")
        }
        var decoder = StateDecoder(section.payload, section: section.name)
        let vcpus = Int(try decoder.u32())
        let count = Int(try decoder.u32())
        guard count <= 64 else { throw StateFormatError.malformed("section 'machine': \(count) RAM blocks is absurd") }
        var blocks: [Block] = []
        for _ in 0..<count {
            blocks.append(Block(
                name: try decoder.string(limit: 256), size: try decoder.u64(), backing: try decoder.string(limit: 32),
                shared: try decoder.bool(), copied: try decoder.bool()))
        }
        var description = MachineDescription(
            vcpuCount: vcpus, blocks: blocks, devices: nil, wasRunning: try decoder.bool(), vmStarted: Double(bitPattern: try decoder.u64()))
        if section.version >= 2 {
            let deviceCount = Int(try decoder.u32())
            guard deviceCount <= deviceLimit else { throw StateFormatError.malformed("section 'machine': \(deviceCount) devices is absurd") }
            description.devices = try (0..<deviceCount).map { _ in try decoder.string(limit: 1024) }
        }
        try decoder.finish()
        return description
    }

    /// Why a VM shaped like `self` cannot take state saved from `incoming`, or nil if it can.
    func mismatch(with incoming: MachineDescription) -> String? {
        if incoming.vcpuCount != vcpuCount {
            return "the incoming VM has \(incoming.vcpuCount) vCPUs, this one has \(vcpuCount) (start it with -smp \(incoming.vcpuCount))"
        }
        for block in incoming.blocks {
            guard let mine = blocks.first(where: { $0.name == block.name }) else {
                return "the incoming VM has RAM block \(block.name) (\(SizeParser.describe(block.size))), this one has none (start it with the same -m/-object/-machine options)"
            }
            if mine.size != block.size {
                return "RAM block \(block.name) is \(SizeParser.describe(block.size)) in the incoming VM and \(SizeParser.describe(mine.size)) here (start it with the same -m)"
            }
            if !block.copied && !mine.adopted && !(mine.backing == "file" && mine.shared) {
                return "RAM block \(block.name) was left in place, not saved in the stream, but here it is \(mine.backing) memory (use the same memory-backend-file,share=on)"
            }
        }
        for mine in blocks where !incoming.blocks.contains(where: { $0.name == mine.name }) {
            return "this VM has RAM block \(mine.name), the incoming one has none (start it with the same -m/-object/-machine options)"
        }
        if let theirs = incoming.devices, let mine = devices {
            return MachineDescription.deviceMismatch(incoming: theirs, mine: mine)
        }
        return nil
    }

    /// The first difference between two device topologies, as an instruction.
    static func deviceMismatch(incoming: [String], mine: [String]) -> String? {
        func id(_ line: String) -> Substring { line.prefix { $0 != ":" } }
        for line in incoming where !mine.contains(line) {
            if let other = mine.first(where: { id($0) == id(line) }) {
                return "device \(id(line)) is '\(line.dropFirst(id(line).count + 2))' in the incoming VM and '\(other.dropFirst(id(other).count + 2))' here (start it with the same device options)"
            }
            return "the incoming VM has device \(line), this one has none (start it with the same device options)"
        }
        for line in mine where !incoming.contains(line) {
            return "this VM has device \(line), the incoming one has none (start it with the same device options)"
        }
        if incoming != mine {
            return "the devices were created in another order (incoming: \(incoming.map { id($0) }.joined(separator: ", ")))"
        }
        return nil
    }
}
