import CGuest

/// Loads the built-in guest (Sources/CGuest/builtin_guest.S) and its interrupt table.
enum BuiltinGuest {
    enum LoadError: Error, CustomStringConvertible {
        case badBlob
        var description: String { "the built-in guest image is damaged (bad header); rebuild cprvmm" }
    }

    static var image: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: cguest_builtin_start(), count: cguest_builtin_size())
    }

    /// Copies the program to GUEST_CODE, builds its IDT and returns where vCPUs enter it.
    static func load(into memory: GuestMemory) throws -> BootEntry {
        let blob = image
        guard blob.count >= Int(BG_HEADER_SIZE), blob.loadUnaligned(as: UInt32.self) == UInt32(BG_MAGIC_VALUE) else { throw LoadError.badBlob }
        let code = UInt64(GUEST_CODE)
        try memory.write(blob, at: GuestAddress(code))
        // The guest counts on its status records and variables starting at zero, as fresh RAM
        // does; a mem-path file may still hold an earlier VM's (its ticks, counters, cursors).
        try memory.zero(at: GuestAddress(UInt64(GUEST_STATUS)), count: Int(GUEST_KERNEL_STACKS - GUEST_STATUS))
        func entry(_ offset: Int32) -> UInt64 { code + UInt64(blob.loadUnaligned(fromByteOffset: Int(offset), as: UInt32.self)) }

        let fatalStubs = entry(BG_FATAL_STUBS)
        var gates = [UInt64](repeating: 0, count: 256)
        for vector in 0..<32 { gates[vector] = fatalStubs + UInt64(vector * 8) }
        gates[13] = entry(BG_GP_HANDLER)
        for vector in 0x20...0x2F { gates[vector] = entry(BG_IRQ_RETURN) }  // PIC in auto-EOI mode
        gates[Int(BG_IPI_VECTOR)] = entry(BG_IPI_HANDLER)
        gates[Int(BG_DISK_VECTOR)] = entry(BG_DISK_HANDLER)
        gates[0xFF] = entry(BG_IRQ_RETURN)  // LAPIC spurious vector: no EOI
        try writeIDT(gates, into: memory)
        return .longMode(rip: entry(BG_USER_ENTRY), userMode: true, withIDT: true)
    }

    /// 64-bit interrupt gates (DPL 0, kernel code selector); absent vectors stay not-present.
    private static func writeIDT(_ handlers: [UInt64], into memory: GuestMemory) throws(GuestMemoryError) {
        let table = try memory.slice(at: GuestAddress(UInt64(GUEST_IDT)), count: 256 * 16)
        table.initializeMemory(as: UInt8.self, repeating: 0)
        for (vector, handler) in handlers.enumerated() where handler != 0 {
            let low = (handler & 0xFFFF) | (UInt64(GUEST_SEL_KERNEL_CODE) << 16) | (0x8E << 40) | (((handler >> 16) & 0xFFFF) << 48)
            table.storeBytes(of: low.littleEndian, toByteOffset: vector * 16, as: UInt64.self)
            table.storeBytes(of: (handler >> 32).littleEndian, toByteOffset: vector * 16 + 8, as: UInt64.self)
        }
    }

    /// The ranges the guest fills with its pattern: `percent` of all RAM, starting above the
    /// boot area and continuing across the ranges in order, 4 KiB aligned.
    static func fillRanges(ram: [BootInfo.Range], totalRAM: UInt64, percent: Int) -> [BootInfo.Range] {
        var remaining = (totalRAM / 100 * UInt64(percent)) & ~0xFFF
        var result: [BootInfo.Range] = []
        for range in ram where remaining > 0 {
            let start = max(range.start, UInt64(GUEST_RESERVED_END))
            guard start < range.end else { continue }
            let length = min(range.end - start, remaining) & ~0xFFF
            guard length > 0 else { continue }
            result.append((start, start + length))
            remaining -= length
        }
        return result
    }

    /// The smallest dirty area `dirty=` accepts.
    static let minimumDirtyArea: UInt64 = 1 << 20

    /// Where the `dirty=` workload writes: the largest piece of RAM above the boot area that
    /// no fill range covers, 4 KiB aligned; nil if no piece has `minimumDirtyArea` bytes.
    static func dirtyArea(ram: [BootInfo.Range], fill: [BootInfo.Range]) -> BootInfo.Range? {
        var best: BootInfo.Range?
        for range in ram {
            var start = (max(range.start, UInt64(GUEST_RESERVED_END)) + 0xFFF) & ~0xFFF
            let end = range.end & ~0xFFF
            // The fill ranges are sorted and do not overlap: walk the gaps they leave here.
            for filled in fill + [(end, end)] where filled.end > start && filled.start <= end {
                let pieceEnd = max(start, min(filled.start & ~0xFFF, end))
                if pieceEnd - start > (best.map { $0.end - $0.start } ?? 0) { best = (start, pieceEnd) }
                start = max(start, (filled.end + 0xFFF) & ~0xFFF)
            }
        }
        guard let best, best.end - best.start >= minimumDirtyArea else { return nil }
        return best
    }

    /// Pages per second for `dirty=percent` of `ramSize` bytes of RAM.
    static func dirtyRate(percent: Int, ramSize: UInt64) -> UInt64 {
        UInt64(percent) * ramSize / 100 / 4096
    }
}
