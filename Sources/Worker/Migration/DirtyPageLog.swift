import CKVM
import Glibc

/// The guest pages that changed since the last look, per RAM block: KVM's dirty log of every
/// writable memory slot, merged with the pages cprvmm's own devices wrote (DeviceWrites).
///
/// KVM's bitmap mode, with MANUAL_DIRTY_LOG_PROTECT2 when the host has it: fetching the log
/// then does not write-protect anything, and the fetched bits are cleared (and their pages
/// protected again) in one KVM_CLEAR_DIRTY_LOG per slot. Not the dirty ring: it must be
/// enabled before a VM's first vCPU exists and sized for the worst case, while a migration is
/// asked for long after the VM was made (maybe by an image before a live update).
final class DirtyPageLog {
    static let pageSize = 4096
    private let vm: VmFd
    /// The writable slots of the blocks being logged, each with a bitmap buffer for KVM.
    private let slots: [(slot: MachineMemory.Slot, buffer: UnsafeMutablePointer<UInt64>, words: Int)]
    let blocks: [RamBlock]
    let manualProtect: Bool
    private var logging = false

    /// Starts logging the guest's writes to `blocks`: from now on every page it writes is
    /// reported once by the next `collect()`.
    init(vm: VmFd, kvm: Kvm, memory: MachineMemory, blocks: [RamBlock]) throws(SystemError) {
        self.vm = vm
        self.blocks = blocks
        slots = memory.slots.filter { slot in !slot.readOnly && blocks.contains { $0 === slot.block } }.map { slot in
            let words = Int((slot.size / UInt64(DirtyPageLog.pageSize) + 63) / 64)
            let buffer = UnsafeMutablePointer<UInt64>.allocate(capacity: words)
            buffer.initialize(repeating: 0, count: words)
            return (slot, buffer, words)
        }
        manualProtect = kvm.checkExtension(CKVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) & Int32(CKVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) != 0
        if manualProtect {
            try vm.enableCapability(CKVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, CKVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)
        }
        // Pages devices wrote before now are sent with the first full pass anyway.
        for block in blocks { for word in 0..<block.deviceWrites.wordCount { _ = block.deviceWrites.take(word: word) } }
        logging = true
        do {
            for entry in slots { try vm.setUserMemoryRegion(slot: entry.slot, logDirty: true) }
        } catch {
            stop()
            throw error
        }
    }

    deinit {
        stop()
        for entry in slots { entry.buffer.deallocate() }
    }

    /// Ends logging (the slots run without write tracking again). Safe to call twice.
    func stop() {
        guard logging else { return }
        logging = false
        for entry in slots { try? vm.setUserMemoryRegion(slot: entry.slot, logDirty: false) }
        if manualProtect { try? vm.enableCapability(CKVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, 0) }
    }

    /// The pages written since the last call (or since logging started), one bitmap per block
    /// in `blocks` order; bit p of a bitmap is page p of its block. Clears what it returns.
    func collect() throws(SystemError) -> [[UInt64]] {
        var bitmaps = blocks.map { [UInt64](repeating: 0, count: $0.deviceWrites.wordCount) }
        for entry in slots {
            memset(entry.buffer, 0, entry.words * 8)
            try vm.getDirtyLog(slot: entry.slot.number, into: entry.buffer)
            if manualProtect {
                try vm.clearDirtyLog(slot: entry.slot.number, firstPage: 0,
                                     pageCount: UInt32(entry.slot.size / UInt64(DirtyPageLog.pageSize)), bitmap: entry.buffer)
            }
            guard let index = blocks.firstIndex(where: { $0 === entry.slot.block }) else { continue }
            let base = Int(entry.slot.blockOffset / UInt64(DirtyPageLog.pageSize))
            bitmaps[index].withUnsafeMutableBufferPointer { target in
                for word in 0..<entry.words where entry.buffer[word] != 0 {
                    let bits = entry.buffer[word]
                    if base % 64 == 0 {
                        target[base / 64 + word] |= bits
                    } else {
                        for bit in 0..<64 where bits & (1 << UInt64(bit)) != 0 {
                            let page = base + word * 64 + bit
                            target[page / 64] |= 1 << UInt64(page % 64)
                        }
                    }
                }
            }
        }
        for (index, block) in blocks.enumerated() {
            bitmaps[index].withUnsafeMutableBufferPointer { target in
                for word in 0..<target.count { target[word] |= block.deviceWrites.take(word: word) }
            }
        }
        return bitmaps
    }
}
