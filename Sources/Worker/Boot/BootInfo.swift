import CGuest

/// The table a direct-boot guest finds at GUEST_BOOT_INFO (RDI at entry): what the machine
/// looks like, without the guest having to probe for it. Layout in guest_layout.h.
struct BootInfo {
    typealias Range = (start: UInt64, end: UInt64)

    var tscKHz: UInt64
    var cpuCount: Int
    var mode: UInt64 = 0
    var ramRanges: [Range]
    var fillRanges: [Range] = []
    /// The built-in guest's disk: BAR4 address (0: none), capacity in sectors, read-only.
    var diskBar: UInt64 = 0
    var diskSectors: UInt64 = 0
    var diskReadOnly = false
    var diskMode: UInt64 = 0
    /// The built-in guest's NIC: BAR4 address (0: none) and the responder's IPv4 address.
    var netBar: UInt64 = 0
    var netIP: [UInt8] = [0, 0, 0, 0]
    /// The built-in guest's dirtying workload: pages per second (0: off) and where.
    var dirtyRate: UInt64 = 0
    var dirtyArea: Range = (0, 0)

    func write(into memory: GuestMemory) throws(GuestMemoryError) {
        let base = GuestAddress(UInt64(GUEST_BOOT_INFO))
        func put(_ value: UInt64, _ offset: Int32) throws(GuestMemoryError) {
            try memory.store(value, at: base.adding(UInt64(offset))!)
        }
        try memory.zero(at: base, count: Int(BI_SIZE))
        try put(UInt64(BI_MAGIC_VALUE), BI_MAGIC)
        try put(tscKHz, BI_TSC_KHZ)
        try put(UInt64(cpuCount), BI_CPU_COUNT)
        try put(mode, BI_MODE)
        precondition(ramRanges.count <= Int(BI_MAX_RANGES) && fillRanges.count <= Int(BI_MAX_RANGES))
        try put(UInt64(ramRanges.count), BI_RAM_COUNT)
        for (i, range) in ramRanges.enumerated() {
            try put(range.start, BI_RAM_RANGES + Int32(i * 16))
            try put(range.end, BI_RAM_RANGES + Int32(i * 16 + 8))
        }
        try put(diskBar, BI_DISK_BAR)
        try put(diskSectors, BI_DISK_SECTORS)
        try put(diskReadOnly ? 1 : 0, BI_DISK_READ_ONLY)
        try put(diskMode, BI_DISK_MODE)
        try put(netBar, BI_NET_BAR)
        try memory.write(netIP, at: base.adding(UInt64(BI_NET_IP))!)
        try put(dirtyRate, BI_DIRTY_RATE)
        try put(dirtyArea.start, BI_DIRTY_START)
        try put(dirtyArea.end, BI_DIRTY_END)
        try put(UInt64(fillRanges.count), BI_FILL_COUNT)
        for (i, range) in fillRanges.enumerated() {
            try put(range.start, BI_FILL_RANGES + Int32(i * 16))
            try put(range.end, BI_FILL_RANGES + Int32(i * 16 + 8))
        }
    }
}
