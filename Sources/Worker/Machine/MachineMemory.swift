import Glibc

/// Guest RAM as a PC lays it out: main RAM below 3 GiB, the rest above 4 GiB (leaving the
/// hole where firmware and the LAPIC/IOAPIC live), and `-bios` firmware just below 4 GiB with
/// its last 128 KiB copied below 1 MiB, where real-mode code expects it.
final class MachineMemory {
    static let lowMemoryLimit: UInt64 = 3 << 30
    static let highMemoryStart: UInt64 = 4 << 30
    static let isaBiosAliasSize = 128 << 10

    /// Every RAM block; main RAM first.
    let blocks: [RamBlock]
    let guest: GuestMemory
    /// Where main RAM appears in guest-physical space.
    let ramRanges: [BootInfo.Range]

    /// `inherited`: fds of RAM blocks a previous image handed over, by block name.
    init(config: MachineConfig, firmware: Firmware?, inherited: [String: Int32] = [:]) throws {
        let main = try MachineMemory.createMainRAM(config, inherited: inherited)
        var blocks = [main]
        let low = min(main.size, MachineMemory.lowMemoryLimit)
        var regions: [GuestRegion] = []
        if let firmware {
            let bios = try MachineMemory.createFirmwareBlock(firmware, memfd: config.memfdAlloc, inherited: inherited["pc.bios"])
            blocks.append(bios)
            let size = UInt64(firmware.bytes.count)
            regions.append(GuestRegion(start: GuestAddress(MachineMemory.highMemoryStart - size), size: size, block: bios, blockOffset: 0, readOnly: true))
        }
        // With firmware, 0xe0000-0xfffff is RAM holding a copy of the image's last 128 KiB
        // (`loadFirmwareShadow`): real-mode code runs it at F000:xxxx, and SeaBIOS copies
        // itself there and keeps its data there once it has programmed the i440FX's PAM
        // registers (I440FX). Writable RAM from the start serves both, and crosses a live
        // update as the rest of RAM does.
        regions.append(GuestRegion(start: GuestAddress(0), size: low, block: main, blockOffset: 0, readOnly: false))
        if main.size > low {
            let high = main.size - low
            regions.append(GuestRegion(start: GuestAddress(MachineMemory.highMemoryStart), size: high, block: main, blockOffset: low, readOnly: false))
        }
        self.blocks = blocks
        self.guest = try GuestMemory(regions: regions)
        self.ramRanges = MachineMemory.ramRanges(size: main.size)
    }

    /// Where `size` bytes of main RAM appear in guest-physical space: up to 3 GiB from 0,
    /// the rest from 4 GiB.
    static func ramRanges(size: UInt64) -> [BootInfo.Range] {
        let low = min(size, lowMemoryLimit)
        var ranges: [BootInfo.Range] = [(0, low)]
        if size > low { ranges.append((highMemoryStart, highMemoryStart + size - low)) }
        return ranges
    }

    /// Copies the firmware's last 128 KiB below 1 MiB, where a PC's reset path finds it. Only
    /// on a fresh boot: after that the area is the guest's (a live update keeps it as it is).
    func loadFirmwareShadow() {
        guard let bios = blocks.first(where: { $0.name == MachineMemory.firmwareBlockName }) else { return }
        let size = min(UInt64(MachineMemory.isaBiosAliasSize), bios.size)
        let start = 0x10_0000 - Int(size)
        blocks[0].host.advanced(by: start).copyMemory(from: bios.host.advanced(by: Int(bios.size - size)), byteCount: Int(size))
    }

    static let firmwareBlockName = "pc.bios"

    /// Main RAM: the named backend, else a memfd "pc.ram" (memfd-alloc=on) or anonymous memory.
    private static func createMainRAM(_ config: MachineConfig, inherited: [String: Int32]) throws -> RamBlock {
        do {
            guard let id = config.memoryBackendID, let backend = config.memoryBackends.first(where: { $0.id == id }) else {
                if let fd = inherited["pc.ram"], config.memfdAlloc {
                    return try RamBlock.adopt(fd: fd, name: "pc.ram", size: config.ramSize, backing: .memfd, shared: true)
                }
                return config.memfdAlloc
                    ? try RamBlock.memfd(name: "pc.ram", size: config.ramSize)
                    : try RamBlock.anonymous(name: "pc.ram", size: config.ramSize)
            }
            if let fd = inherited[backend.id], backend.kind != .ram {
                let backing: RamBacking = backend.kind == .memfd ? .memfd : .file(path: backend.memPath ?? "")
                return try RamBlock.adopt(fd: fd, name: backend.id, size: backend.size, backing: backing, shared: backend.share)
            }
            let block: RamBlock
            switch backend.kind {
            case .memfd: block = try RamBlock.memfd(name: backend.id, size: backend.size, shared: backend.share)
            case .file: block = try RamBlock.file(name: backend.id, path: backend.memPath ?? "", size: backend.size, shared: backend.share)
            case .ram: block = try RamBlock.anonymous(name: backend.id, size: backend.size, shared: backend.share)
            }
            if backend.prealloc { block.preallocate() }
            return block
        } catch {
            throw ConfigurationError("cannot allocate guest RAM: \(error)")
        }
    }

    private static func createFirmwareBlock(_ firmware: Firmware, memfd: Bool, inherited: Int32?) throws -> RamBlock {
        let size = UInt64(firmware.bytes.count)
        if let inherited, memfd {
            return try RamBlock.adopt(fd: inherited, name: MachineMemory.firmwareBlockName, size: size, backing: .memfd, shared: true)
        }
        let block = memfd ? try RamBlock.memfd(name: MachineMemory.firmwareBlockName, size: size) : try RamBlock.anonymous(name: MachineMemory.firmwareBlockName, size: size)
        firmware.bytes.withUnsafeBytes { block.host.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        return block
    }

    /// At most this much guest memory per KVM memory slot. Creating a slot allocates its
    /// shadow-MMU metadata (~0.7 ms per GiB on kvm_pvm hosts) in one ioctl that nothing on
    /// the host preempts: 4 GiB in one slot kept even a SCHED_FIFO task on the other core off
    /// the CPU for ~2 ms while a guest ran there, 512 MiB slots for ~0.4 ms. With vCPU bridges
    /// the guest runs while a live update's new image creates its slots, so the split shortens
    /// the host's hiccups during the update; it costs ~0.2 ms per GiB more in all.
    static let maxSlotSize: UInt64 = 512 << 20

    /// One KVM memory slot: where it lies in guest-physical space and in its RAM block.
    struct Slot {
        let number: UInt32
        let guestAddress: UInt64
        let size: UInt64
        let block: RamBlock
        let blockOffset: UInt64
        let readOnly: Bool
        var host: UnsafeMutableRawPointer { block.host + Int(blockOffset) }
    }

    /// The slots `register` handed to KVM.
    private(set) var slots: [Slot] = []

    /// Hands every region to KVM as memory slots of at most `maxSlotSize` bytes.
    func register(with vm: VmFd) throws(SystemError) {
        var number: UInt32 = 0
        slots = []
        for region in guest.regions {
            var offset: UInt64 = 0
            while offset < region.size {
                let size = min(MachineMemory.maxSlotSize, region.size - offset)
                let slot = Slot(number: number, guestAddress: region.start.raw + offset, size: size, block: region.block,
                                blockOffset: region.blockOffset + offset, readOnly: region.readOnly)
                try vm.setUserMemoryRegion(slot: slot)
                slots.append(slot)
                number += 1
                offset += size
            }
        }
    }

    /// One line per block for the start-up log: name, size, backing, sharing, huge pages.
    var summary: [String] {
        blocks.map { block in
            var backing = block.backing.name
            if case .file(let path) = block.backing { backing += " \(path)" }
            return "RAM \(block.name): \(SizeParser.describe(block.size)), \(backing), \(block.shared ? "shared" : "private"), \(block.hugePages)"
        }
    }
}
