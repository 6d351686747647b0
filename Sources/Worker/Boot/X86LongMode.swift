import CGuest
import CKVM

/// The 64-bit boot environment cprvmm builds for direct-boot guests (the built-in guest and
/// `-kernel`): a flat GDT, one TSS per vCPU, identity-mapped page tables with 2 MiB pages.
/// Building it from the host keeps the guest's CPL0 start-up code (emulated here) at zero.
enum X86LongMode {
    static let pageSize: UInt64 = 0x1000
    static let gigabyte: UInt64 = 1 << 30
    static let hugePage: UInt64 = 2 << 20

    /// Page directories fit between GUEST_PAGE_TABLES + 2 pages and GUEST_PAGE_TABLES_END.
    static let maxIdentityMappedGiB = (UInt64(GUEST_PAGE_TABLES_END) - UInt64(GUEST_PAGE_TABLES) - 2 * pageSize) / pageSize

    /// Writes GDT, TSSs and page tables mapping [0, identityMapBytes) 1:1, user-accessible.
    static func writeStructures(into memory: GuestMemory, vcpuCount: Int, identityMapBytes: UInt64) throws(GuestMemoryError) {
        try writeGDT(into: memory, vcpuCount: vcpuCount)
        for vcpu in 0..<vcpuCount {
            let tss = GuestAddress(UInt64(GUEST_TSS) + UInt64(vcpu) * UInt64(GUEST_TSS_STRIDE))
            try memory.zero(at: tss, count: Int(GUEST_TSS_STRIDE))
            // RSP0: the stack the CPU switches to on an interrupt or exception from user mode.
            try memory.store(kernelStackTop(vcpu), at: tss.adding(4)!)
            // I/O map base beyond the limit: no bitmap (user port access comes from IOPL=3).
            try memory.store(UInt16(104), at: tss.adding(102)!)
        }
        try writePageTables(into: memory, identityMapBytes: identityMapBytes)
    }

    static func kernelStackTop(_ vcpu: Int) -> UInt64 {
        UInt64(GUEST_KERNEL_STACKS) + UInt64(vcpu + 1) * UInt64(GUEST_KERNEL_STACK_SIZE)
    }

    static func userStackTop(_ vcpu: Int) -> UInt64 {
        UInt64(GUEST_USER_STACKS) + UInt64(vcpu + 1) * UInt64(GUEST_USER_STACK_SIZE)
    }

    static func tssSelector(_ vcpu: Int) -> UInt16 { UInt16(GUEST_SEL_TSS_BASE) + UInt16(vcpu) * 16 }

    private static func writeGDT(into memory: GuestMemory, vcpuCount: Int) throws(GuestMemoryError) {
        let base = GuestAddress(UInt64(GUEST_GDT))
        let descriptors: [UInt64] = [
            0,
            0x00AF_9A00_0000_FFFF,  // 0x08 kernel code: 64-bit, DPL 0
            0x00CF_9200_0000_FFFF,  // 0x10 kernel data
            0x00AF_FA00_0000_FFFF,  // 0x1b user code: 64-bit, DPL 3
            0x00CF_F200_0000_FFFF,  // 0x23 user data, DPL 3
        ]
        for (i, descriptor) in descriptors.enumerated() {
            try memory.store(descriptor, at: base.adding(UInt64(i * 8))!)
        }
        for vcpu in 0..<vcpuCount {
            let tss = UInt64(GUEST_TSS) + UInt64(vcpu) * UInt64(GUEST_TSS_STRIDE)
            let limit: UInt64 = 103
            // 16-byte system descriptor: type 0xB (busy 64-bit TSS, as TR is loaded directly), present.
            let low = (limit & 0xFFFF) | ((tss & 0xFF_FFFF) << 16) | (0x8B << 40) | (((tss >> 24) & 0xFF) << 56)
            let high = tss >> 32
            let offset = UInt64(tssSelector(vcpu))
            try memory.store(low, at: base.adding(offset)!)
            try memory.store(high, at: base.adding(offset + 8)!)
        }
    }

    static func gdtLimit(vcpuCount: Int) -> UInt16 { UInt16(GUEST_SEL_TSS_BASE) + UInt16(vcpuCount) * 16 - 1 }

    private static func writePageTables(into memory: GuestMemory, identityMapBytes: UInt64) throws(GuestMemoryError) {
        let pml4 = UInt64(GUEST_PAGE_TABLES)
        let pdpt = pml4 + pageSize
        let firstPD = pdpt + pageSize
        let gib = (identityMapBytes + gigabyte - 1) / gigabyte
        precondition(gib <= maxIdentityMappedGiB, "identity map too large")
        try memory.zero(at: GuestAddress(pml4), count: Int(2 * pageSize + gib * pageSize))
        let present: UInt64 = 0x7  // present, writable, user
        try memory.store(pdpt | present, at: GuestAddress(pml4))
        for g in 0..<gib {
            let pd = firstPD + g * pageSize
            try memory.store(pd | present, at: GuestAddress(pdpt + g * 8))
            let entries = try memory.slice(at: GuestAddress(pd), count: Int(pageSize))
            for e in 0..<512 {
                let physical = g * gigabyte + UInt64(e) * hugePage
                entries.storeBytes(of: (physical | present | 0x80).littleEndian, toByteOffset: e * 8, as: UInt64.self)
            }
        }
    }

    private static func segment(selector: UInt16, code: Bool, dpl: UInt8) -> kvm_segment {
        var s = kvm_segment()
        s.base = 0
        s.limit = 0xFFFF_FFFF
        s.selector = selector
        s.type = code ? 0xB : 0x3
        s.present = 1
        s.dpl = dpl
        s.db = code ? 0 : 1
        s.s = 1
        s.l = code ? 1 : 0
        s.g = 1
        return s
    }

    /// Special registers for 64-bit mode with paging on, at CPL 0 or (userMode) CPL 3.
    /// `current` supplies what must be kept from KVM's reset state (APIC base, ...).
    static func specialRegisters(_ current: kvm_sregs, vcpu: Int, vcpuCount: Int, userMode: Bool, withIDT: Bool) -> kvm_sregs {
        var sregs = current
        let dpl: UInt8 = userMode ? 3 : 0
        let code = segment(selector: UInt16(userMode ? GUEST_SEL_USER_CODE : GUEST_SEL_KERNEL_CODE), code: true, dpl: dpl)
        let data = segment(selector: UInt16(userMode ? GUEST_SEL_USER_DATA : GUEST_SEL_KERNEL_DATA), code: false, dpl: dpl)
        sregs.cs = code
        sregs.ds = data
        sregs.es = data
        sregs.fs = data
        sregs.gs = data
        sregs.ss = data
        var tr = kvm_segment()
        tr.base = UInt64(GUEST_TSS) + UInt64(vcpu) * UInt64(GUEST_TSS_STRIDE)
        tr.limit = 103
        tr.selector = tssSelector(vcpu)
        tr.type = 0xB
        tr.present = 1
        sregs.tr = tr
        sregs.gdt.base = UInt64(GUEST_GDT)
        sregs.gdt.limit = gdtLimit(vcpuCount: vcpuCount)
        sregs.idt.base = withIDT ? UInt64(GUEST_IDT) : 0
        sregs.idt.limit = withIDT ? 0xFFF : 0
        sregs.cr3 = UInt64(GUEST_PAGE_TABLES)
        sregs.cr4 = 0x20 | 0x200 | 0x400  // PAE, OSFXSR, OSXMMEXCPT: SSE works at CPL3
        sregs.cr0 = 0x8001_0033  // PG, WP, NE, ET, MP, PE
        sregs.efer = 0x500  // LME, LMA
        return sregs
    }
}
