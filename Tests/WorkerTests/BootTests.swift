import CGuest
import Testing
@testable import Worker

@Suite struct BootLayoutTests {
    @Test("the pattern fills the requested share of RAM above the boot area, across the hole")
    func fillRanges() {
        let low: BootInfo.Range = (0, 3 << 30)
        let high: BootInfo.Range = (4 << 30, 5 << 30)
        let ranges = BuiltinGuest.fillRanges(ram: [low, high], totalRAM: 4 << 30, percent: 90)
        #expect(ranges.count == 2)
        #expect(ranges[0].start == UInt64(GUEST_RESERVED_END))
        #expect(ranges[0].end == 3 << 30)
        let total = ranges.reduce(UInt64(0)) { $0 + $1.end - $1.start }
        #expect(total == ((4 << 30) / 100 * 90) & ~0xFFF)
        #expect(ranges.allSatisfy { $0.start % 4096 == 0 && $0.end % 4096 == 0 })
        #expect(BuiltinGuest.fillRanges(ram: [(0, 64 << 20)], totalRAM: 64 << 20, percent: 0).isEmpty)
    }

    @Test("the dirty area is the largest piece of RAM the fill leaves, at least 1 MiB")
    func dirtyArea() {
        let mib: UInt64 = 1 << 20
        // 64 MiB, fill=25: the pattern in [8, ~24) MiB, the dirty area above it.
        let small = MachineMemory.ramRanges(size: 64 * mib)
        #expect(small.count == 1 && small[0] == (0, 64 * mib))
        let fill = BuiltinGuest.fillRanges(ram: small, totalRAM: 64 * mib, percent: 25)
        let area = BuiltinGuest.dirtyArea(ram: small, fill: fill)
        #expect(fill.count == 1 && area?.start == fill[0].end && area?.end == 64 * mib)
        // No fill: everything above the boot area.
        let whole = BuiltinGuest.dirtyArea(ram: small, fill: [])
        #expect(whole?.start == UInt64(GUEST_RESERVED_END) && whole?.end == 64 * mib)
        // 5 GiB, fill=50: 2.5 GiB of pattern from 8 MiB leaves ~0.5 GiB below the hole and
        // the whole 2 GiB above 4 GiB, which is larger.
        let big = MachineMemory.ramRanges(size: 5 << 30)
        #expect(big.count == 2 && big[1] == (4 << 30, 6 << 30))
        let bigArea = BuiltinGuest.dirtyArea(ram: big, fill: BuiltinGuest.fillRanges(ram: big, totalRAM: 5 << 30, percent: 50))
        #expect(bigArea?.start == 4 << 30 && bigArea?.end == 6 << 30)
        // fill=90 of 64 MiB covers everything above 8 MiB; 16 MiB leaves nothing either.
        #expect(BuiltinGuest.dirtyArea(ram: small, fill: BuiltinGuest.fillRanges(ram: small, totalRAM: 64 * mib, percent: 90)) == nil)
        let tiny = MachineMemory.ramRanges(size: 16 * mib)
        #expect(BuiltinGuest.dirtyArea(ram: tiny, fill: BuiltinGuest.fillRanges(ram: tiny, totalRAM: 16 * mib, percent: 90)) == nil)
        // Less than 1 MiB left over is no area: 9 MiB of RAM above the boot area would be 1 MiB.
        #expect(BuiltinGuest.dirtyArea(ram: [(0, 8 * mib + 1020 * 1024)], fill: []) == nil)
        #expect(BuiltinGuest.dirtyArea(ram: [(0, 9 * mib)], fill: [])! == (8 * mib, 9 * mib))
        // dirty=PCT: PCT percent of all RAM, in 4 KiB pages per second.
        #expect(BuiltinGuest.dirtyRate(percent: 100, ramSize: 64 * mib) == 16384)
        #expect(BuiltinGuest.dirtyRate(percent: 10, ramSize: 1 << 30) == 26214)
        #expect(BuiltinGuest.dirtyRate(percent: 1000, ramSize: 256 << 30) == 671_088_640)
    }

    @Test("page tables identity-map RAM with 2 MiB user pages; the GDT holds one TSS per vCPU")
    func longModeStructures() throws {
        let block = try RamBlock.anonymous(name: "ram", size: 16 << 20)
        let memory = try GuestMemory(regions: [GuestRegion(start: GuestAddress(0), size: 16 << 20, block: block, blockOffset: 0, readOnly: false)])
        try X86LongMode.writeStructures(into: memory, vcpuCount: 2, identityMapBytes: 4 << 30)
        let pml4 = UInt64(GUEST_PAGE_TABLES)
        #expect(try memory.load(UInt64.self, at: GuestAddress(pml4)) == (pml4 + 0x1000) | 7)
        // Third GiB, entry 5: physical 2 GiB + 10 MiB, present | writable | user | 2 MiB page.
        let pd2 = pml4 + 0x2000 + 2 * 0x1000
        #expect(try memory.load(UInt64.self, at: GuestAddress(pd2 + 5 * 8)) == ((2 << 30) + 5 * (2 << 20)) | 0x87)
        // vCPU 1's TSS descriptor points at its TSS, whose RSP0 is its own kernel stack.
        let tss1 = UInt64(GUEST_TSS) + UInt64(GUEST_TSS_STRIDE)
        let descriptor = try memory.load(UInt64.self, at: GuestAddress(UInt64(GUEST_GDT) + UInt64(X86LongMode.tssSelector(1))))
        #expect((descriptor >> 16) & 0xFF_FFFF == tss1 & 0xFF_FFFF)
        #expect(try memory.load(UInt64.self, at: GuestAddress(tss1 + 4)) == X86LongMode.kernelStackTop(1))
    }

    @Test("the built-in guest image carries its header and fits below the page tables")
    func builtinImage() {
        let image = BuiltinGuest.image
        #expect(image.loadUnaligned(as: UInt32.self) == UInt32(BG_MAGIC_VALUE))
        #expect(UInt64(GUEST_CODE) + UInt64(image.count) <= UInt64(GUEST_PAGE_TABLES))
    }

    @Test("debug-exit statuses follow QEMU's isa-debug-exit", arguments: [(UInt32(0), Int32(1)), (0x21, 67), (0x10, 33), (0x7F, 255)])
    func debugExitStatus(value: UInt32, status: Int32) {
        #expect(DebugExit.exitStatus(for: value) == status)
    }

    @Test func unknownPortsReadAllOnes() {
        let bus = IoBus()
        var data: [UInt8] = [0, 0]
        data.withUnsafeMutableBytes { bus.read(port: 0x1234, size: 2, count: 1, data: $0) }
        #expect(data == [0xFF, 0xFF])
    }
}

@Suite struct ElfKernelTests {
    /// A minimal ELF64 executable header with one PT_LOAD segment.
    static func elf(machine: UInt16 = 62, type: UInt16 = 2, paddr: UInt64 = 0x100_0000, entry: UInt64 = 0x100_0000, fileSize: UInt64 = 16) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 64 + 56 + 16)
        func put<T: FixedWidthInteger>(_ value: T, _ at: Int) {
            withUnsafeBytes(of: value.littleEndian) { for (i, b) in $0.enumerated() { bytes[at + i] = b } }
        }
        bytes[0...3] = [0x7F, 0x45, 0x4C, 0x46]
        bytes[4] = 2; bytes[5] = 1; bytes[6] = 1
        put(type, 16); put(machine, 18); put(UInt32(1), 20)
        put(entry, 24); put(UInt64(64), 32); put(UInt16(64), 52); put(UInt16(56), 54); put(UInt16(1), 56)
        put(UInt32(1), 64); put(UInt64(120), 64 + 8); put(paddr, 64 + 16); put(paddr, 64 + 24)
        put(fileSize, 64 + 32); put(fileSize + 100, 64 + 40)
        return bytes
    }

    @Test func parsesAValidKernel() throws {
        let kernel = try ElfKernel.parse(Self.elf(), name: "k")
        #expect(kernel.entry == 0x100_0000)
        #expect(kernel.segments == [ElfKernel.Segment(physicalAddress: 0x100_0000, fileOffset: 120, fileSize: 16, memorySize: 116)])
    }

    @Test("malformed kernels are refused with a reason", arguments: [
        (Array("hello".utf8), "not an ELF file"),
        (ElfKernelTests.elf(machine: 3), "is not x86-64"),
        (ElfKernelTests.elf(type: 3), "is not an executable"),
        (ElfKernelTests.elf(paddr: 0x1000, entry: 0x1000), "overlaps the boot area"),
        (ElfKernelTests.elf(entry: 0x5000_0000), "is not inside a loadable segment"),
        (ElfKernelTests.elf(fileSize: 1 << 40), "lies outside the file"),
    ])
    func refused(bytes: [UInt8], reason: String) {
        do {
            _ = try ElfKernel.parse(bytes, name: "k")
            Issue.record("accepted a bad kernel")
        } catch {
            #expect("\(error)".contains(reason), "\(error)")
        }
    }
}

@Suite struct KvmAvailabilityTests {
    @Test("a missing or wrong KVM device is one clear line")
    func unusableDevices() {
        #expect(throws: KvmUnavailable.self) { try Kvm(path: "/nonexistent/kvm") }
        do {
            _ = try Kvm(path: "/nonexistent/kvm")
        } catch {
            #expect(error.description == "cannot open /nonexistent/kvm: no such device file (load the kvm module, or run on a host with hardware virtualisation)")
        }
        do {
            _ = try Kvm(path: "/dev/null")
            Issue.record("/dev/null was accepted as KVM")
        } catch {
            #expect(error.description.hasPrefix("/dev/null is not a KVM device (KVM_GET_API_VERSION: "), "\(error)")
        }
    }
}
