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
    /// KVM's bits are cleared (and their pages write-protected again) word by word right
    /// before the pages are sent (`protectBeforeSending`), as QEMU's clear_bmap: a page the
    /// guest writes between the look and its turn goes once, not once now and again next pass.
    /// Needs MANUAL_DIRTY_LOG_PROTECT2 and slots that start on a 64-page boundary of their block.
    let deferredProtect: Bool
    /// KVM_DIRTY_LOG_INITIALLY_SET: logging starts with every page dirty and nothing
    /// write-protected, so the first pass is a `collect()` like the others and protects as it goes.
    let initiallySet: Bool
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
        let offered = UInt64(max(kvm.checkExtension(CKVM_CAP_MANUAL_DIRTY_LOG_PROTECT2), 0))
        manualProtect = offered & CKVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE != 0
        deferredProtect = manualProtect && slots.allSatisfy { $0.slot.blockOffset % UInt64(64 * DirtyPageLog.pageSize) == 0 }
        initiallySet = deferredProtect && offered & CKVM_DIRTY_LOG_INITIALLY_SET != 0
        if manualProtect {
            try vm.enableCapability(CKVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
                                    CKVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | (initiallySet ? CKVM_DIRTY_LOG_INITIALLY_SET : 0))
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

    /// With `deferredProtect`: clears KVM's bits of pages 64·word ... 64·word + 63 of block
    /// `blockIndex` that the last `collect()` returned, write-protecting those pages again.
    /// Call before reading any of them: a write after this shows in the next `collect()`.
    func protectBeforeSending(blockIndex: Int, word: Int) throws(SystemError) {
        guard deferredProtect else { return }
        let page = word * 64
        for entry in slots where entry.slot.block === blocks[blockIndex] {
            let base = Int(entry.slot.blockOffset / UInt64(DirtyPageLog.pageSize))
            let slotPages = Int(entry.slot.size / UInt64(DirtyPageLog.pageSize))
            guard page >= base, page < base + slotPages else { continue }
            let slotWord = (page - base) / 64
            guard entry.buffer[slotWord] != 0 else { return }
            try vm.clearDirtyLog(slot: entry.slot.number, firstPage: UInt64(slotWord * 64),
                                 pageCount: UInt32(min(64, slotPages - slotWord * 64)), bitmap: entry.buffer + slotWord)
            entry.buffer[slotWord] = 0
            return
        }
    }

    /// The pages written since the last call (or since logging started; every page with
    /// `initiallySet`), one bitmap per block in `blocks` order; bit p of a bitmap is page p of
    /// its block. Clears what it returns, at once or (`deferredProtect`) word by word as the
    /// caller sends.
    func collect() throws(SystemError) -> [[UInt64]] {
        var bitmaps = blocks.map { [UInt64](repeating: 0, count: $0.deviceWrites.wordCount) }
        for entry in slots {
            memset(entry.buffer, 0, entry.words * 8)
            try vm.getDirtyLog(slot: entry.slot.number, into: entry.buffer)
            if manualProtect && !deferredProtect {
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
