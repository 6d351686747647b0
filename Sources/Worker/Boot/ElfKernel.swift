import CGuest

/// An ELF64 x86-64 executable for `-kernel`. Entry contract (docs/guest.md): every vCPU
/// starts at e_entry in 64-bit mode at CPL 0, interrupts off, with the cprvmm GDT and
/// identity-mapped page tables, RDI = GUEST_BOOT_INFO, RSI = vCPU index, RSP = a small stack.
struct ElfKernel {
    struct Segment: Equatable {
        let physicalAddress: UInt64
        let fileOffset: Int
        let fileSize: Int
        let memorySize: UInt64
    }

    let entry: UInt64
    let segments: [Segment]
    let bytes: [UInt8]

    static let maxFileSize = 256 << 20

    static func load(path: String) throws -> ElfKernel {
        let bytes = try readWholeFile(path, limit: maxFileSize, option: "-kernel")
        return try parse(bytes, name: path)
    }

    /// Validates the headers; every offset and size is checked before use.
    static func parse(_ bytes: [UInt8], name: String) throws -> ElfKernel {
        func fail(_ why: String) -> ConfigurationError { ConfigurationError("-kernel \(name): \(why)") }
        func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8 }
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * $1) } }
        func u64(_ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(bytes[at + $1]) << (8 * $1) } }

        guard bytes.count >= 64, bytes[0] == 0x7F, bytes[1] == 0x45, bytes[2] == 0x4C, bytes[3] == 0x46 else {
            throw fail("not an ELF file (cprvmm boots ELF64 x86-64 executables; use -bios for raw images)")
        }
        guard bytes[4] == 2 else { throw fail("32-bit ELF; cprvmm boots ELF64 x86-64 executables") }
        guard bytes[5] == 1 else { throw fail("big-endian ELF; expected little-endian x86-64") }
        guard u16(18) == 62 else { throw fail("ELF machine \(u16(18)) is not x86-64") }
        guard u16(16) == 2 else { throw fail("ELF type \(u16(16)) is not an executable (ET_EXEC); link with a fixed address") }
        let entry = u64(24)
        let phoff = u64(32)
        let phentsize = Int(u16(54))
        let phnum = Int(u16(56))
        guard phentsize >= 56, phoff < UInt64(bytes.count),
              UInt64(phnum) * UInt64(phentsize) <= UInt64(bytes.count) - phoff else {
            throw fail("program headers lie outside the file")
        }
        var segments: [Segment] = []
        for i in 0..<phnum {
            let ph = Int(phoff) + i * phentsize
            guard u32(ph) == 1 else { continue }  // PT_LOAD
            let offset = u64(ph + 8)
            let paddr = u64(ph + 24)
            let filesz = u64(ph + 32)
            let memsz = u64(ph + 40)
            guard filesz <= memsz, offset <= UInt64(bytes.count), filesz <= UInt64(bytes.count) - offset else {
                throw fail("segment \(i) lies outside the file")
            }
            guard paddr.addingReportingOverflow(memsz).overflow == false else { throw fail("segment \(i) wraps around") }
            guard paddr >= UInt64(GUEST_RESERVED_END) else {
                throw fail("segment at 0x\(String(paddr, radix: 16)) overlaps the boot area below 0x\(String(GUEST_RESERVED_END, radix: 16)); link the kernel higher")
            }
            segments.append(Segment(physicalAddress: paddr, fileOffset: Int(offset), fileSize: Int(filesz), memorySize: memsz))
        }
        guard !segments.isEmpty else { throw fail("no loadable segments") }
        guard segments.contains(where: { entry >= $0.physicalAddress && entry < $0.physicalAddress + $0.memorySize }) else {
            throw fail("entry point 0x\(String(entry, radix: 16)) is not inside a loadable segment")
        }
        return ElfKernel(entry: entry, segments: segments, bytes: bytes)
    }

    /// Copies the segments into guest RAM (bounds-checked) and zeroes their .bss parts.
    func load(into memory: GuestMemory, name: String) throws -> BootEntry {
        for segment in segments {
            let target = GuestAddress(segment.physicalAddress)
            do {
                let destination = try memory.slice(at: target, count: Int(segment.memorySize))
                destination.initializeMemory(as: UInt8.self, repeating: 0)
                bytes.withUnsafeBytes { source in
                    destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[segment.fileOffset..<segment.fileOffset + segment.fileSize]))
                }
            } catch {
                throw ConfigurationError("-kernel \(name): segment at \(target) (\(segment.memorySize) bytes) lies outside guest RAM (give the VM more memory with -m)")
            }
        }
        return .longMode(rip: entry, userMode: false, withIDT: false)
    }
}
