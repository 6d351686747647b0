import Shared

/// What a state stream was saved from, so a target with a different shape is refused with
/// the difference named, and what the VM's identity is (its start time survives updates).
struct MachineDescription: Equatable {
    static let sectionName = "machine"
    static let sectionVersion: UInt32 = 1

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
        return encoder.bytes
    }

    static func decode(_ section: StateSection) throws -> MachineDescription {
        guard section.name == sectionName else {
            throw StateFormatError.malformed("the stream starts with section '\(section.name)', expected '\(sectionName)'")
        }
        guard section.version == sectionVersion else {
            throw StateFormatError.malformed("section '\(section.name)' has version \(section.version); this cprvmm reads version \(sectionVersion)")
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
        let description = MachineDescription(
            vcpuCount: vcpus, blocks: blocks, wasRunning: try decoder.bool(), vmStarted: Double(bitPattern: try decoder.u64()))
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
        return nil
    }
}
