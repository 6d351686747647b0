import Shared
import Testing

@testable import Worker

/// A PCI function with one I/O and one 64-bit memory BAR, recording what reaches it.
private final class TestFunction: PciFunction, PortDevice, MmioDevice {
    var config: PciConfigSpace
    var pciName: String { "test" }

    init() {
        config = PciConfigSpace(vendor: 0x1AF4, device: 0x1042, classCode: 0x01_0000, interruptPin: 1)
        config.addBar(0, kind: .io, size: 0x40)
        config.addBar(4, kind: .memory64, size: 0x4000, prefetchable: true)
    }

    func barTarget(_ index: Int) -> PciBarTarget? { index == 0 ? .io(self) : .memory(self) }
    func portRead(offset: UInt16, into data: UnsafeMutableRawBufferPointer) { data.initializeMemory(as: UInt8.self, repeating: 0x11) }
    func portWrite(offset: UInt16, from data: UnsafeRawBufferPointer) {}
    func mmioRead(offset: UInt64, into data: UnsafeMutableRawBufferPointer) { data.initializeMemory(as: UInt8.self, repeating: 0x22) }
    func mmioWrite(offset: UInt64, from data: UnsafeRawBufferPointer) {}
}

@Suite struct PciConfigSpaceTests {
    @Test("ids, class and header read back little-endian; read-only bytes ignore writes")
    func identity() {
        var config = PciConfigSpace(vendor: 0x8086, device: 0x1237, classCode: 0x06_0000, revision: 2)
        #expect(config.read(0, size: 4) == 0x1237_8086)
        #expect(config.read(8, size: 4) == 0x0600_0002)
        config.write(0, size: 4, value: 0xFFFF_FFFF)
        config.write(8, size: 4, value: 0)
        #expect(config.read(0, size: 4) == 0x1237_8086)
        #expect(config.read(8, size: 4) == 0x0600_0002)
        #expect(config.read(0xFE, size: 4) == 0xFFFF_0000, "past the end reads all ones")
    }

    @Test("BAR sizing: all ones written read back as the size mask with the type bits")
    func barSizing() {
        var config = PciConfigSpace(vendor: 1, device: 2, classCode: 0)
        config.addBar(0, kind: .io, size: 0x40)
        config.addBar(1, kind: .memory32, size: 0x1000)
        config.addBar(2, kind: .memory64, size: 0x4000, prefetchable: true)
        for offset in stride(from: 0x10, through: 0x1C, by: 4) { config.write(offset, size: 4, value: 0xFFFF_FFFF) }
        #expect(config.read(0x10, size: 4) == 0xFFFF_FFC1)
        #expect(config.read(0x14, size: 4) == 0xFFFF_F000)
        #expect(config.read(0x18, size: 4) == 0xFFFF_C00C)
        #expect(config.read(0x1C, size: 4) == 0xFFFF_FFFF, "the high half of a 64-bit BAR")
        #expect(config.read(0x20, size: 4) == 0, "no BAR 4")
        #expect(config.read(0x30, size: 4) == 0, "no expansion ROM")
    }

    @Test("an expansion ROM sizes like a BAR and decodes only with its enable bit and memory space on")
    func expansionROM() {
        var config = PciConfigSpace(vendor: 1, device: 2, classCode: 0)
        config.addROM(size: 0x40000)
        config.write(0x30, size: 4, value: 0xFFFF_FFFE)
        #expect(config.read(0x30, size: 4) == 0xFFFC_0000, "size mask; bit 0 (enable) as written")
        config.write(0x30, size: 4, value: 0xFEB0_0000)
        config.write(4, size: 2, value: 0x2)
        #expect(config.barAddress(PciConfigSpace.romIndex) == nil, "not enabled")
        config.write(0x30, size: 4, value: 0xFEB0_0001)
        #expect(config.barAddress(PciConfigSpace.romIndex) == 0xFEB0_0000)
        config.write(4, size: 2, value: 0)
        #expect(config.barAddress(PciConfigSpace.romIndex) == nil, "memory space off")
        #expect(config.bar(PciConfigSpace.romIndex)?.size == 0x40000)
    }

    @Test("a BAR decodes only with its space enabled and a reachable address")
    func barAddress() {
        var config = PciConfigSpace(vendor: 1, device: 2, classCode: 0)
        config.addBar(0, kind: .io, size: 0x40)
        config.addBar(2, kind: .memory64, size: 0x4000)
        config.write(0x10, size: 4, value: 0xC000)
        config.write(0x18, size: 4, value: 0xFEBF_8000)
        config.write(0x1C, size: 4, value: 0x1)
        #expect(config.barAddress(0) == nil && config.barAddress(2) == nil, "disabled in the command register")
        config.write(4, size: 2, value: 0x3)
        #expect(config.barAddress(0) == 0xC000)
        #expect(config.barAddress(2) == 0x1_FEBF_8000)
        config.write(0x10, size: 4, value: 0xFFFF_0000)
        #expect(config.barAddress(0) == nil, "an I/O address above 0xffff decodes nothing")
        #expect(config.barAddress(1) == nil, "not a BAR")
    }

    @Test("capabilities chain from 0x34 and set the status bit; status error bits are write-one-to-clear")
    func capabilitiesAndStatus() {
        var config = PciConfigSpace(vendor: 1, device: 2, classCode: 0)
        let first = config.addCapability(id: 0x11, body: [0, 0])
        let second = config.addCapability(id: 0x09, body: [1, 2, 3])
        #expect(config.read(0x34, size: 1) == UInt32(first))
        #expect(config.read(first, size: 2) == UInt32(second) << 8 | 0x11)
        #expect(config.read(second, size: 2) == 0x09)
        #expect(config.read(6, size: 2) & 0x10 != 0)
        config.put8(7, 0x80)  // the device signals a parity error
        config.write(6, size: 2, value: 0x8000)
        #expect(config.read(6, size: 2) & 0x8000 == 0)
    }

    @Test("a restore refuses a config space saved from another device")
    func restore() throws {
        var config = PciConfigSpace(vendor: 0x8086, device: 0x1237, classCode: 0x06_0000)
        var other = PciConfigSpace(vendor: 0x8086, device: 0x7000, classCode: 0x06_0100)
        other.write(0x3C, size: 1, value: 0x0B)
        #expect(throws: ConfigurationError.self) { try config.restore(other.bytes) }
        var same = config
        same.write(0x3C, size: 1, value: 0x0B)
        try config.restore(same.bytes)
        #expect(config.read(0x3C, size: 1) == 0x0B)
    }
}

@Suite struct PciBusTests {
    func machine() throws -> (I440FX, Buses) {
        let buses = Buses(ports: IoBus(), mmio: MmioBus())
        let chipset = try I440FX(buses: buses)
        try chipset.attach(to: buses)
        return (chipset, buses)
    }

    func configRead(_ ports: IoBus, _ bdf: UInt32, _ register: UInt32, size: Int = 4) -> UInt32 {
        write32(ports, 0xCF8, 0x8000_0000 | bdf << 8 | (register & 0xFC))
        var data = [UInt8](repeating: 0, count: size)
        data.withUnsafeMutableBytes { ports.read(port: 0xCFC + UInt16(register & 3), size: size, count: 1, data: $0) }
        return data.enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * $1.offset) }
    }

    func configWrite(_ ports: IoBus, _ bdf: UInt32, _ register: UInt32, _ value: UInt32, size: Int = 4) {
        write32(ports, 0xCF8, 0x8000_0000 | bdf << 8 | (register & 0xFC))
        withUnsafeBytes(of: value.littleEndian) { ports.write(port: 0xCFC + UInt16(register & 3), size: size, count: 1, data: UnsafeRawBufferPointer(rebasing: $0[0..<size])) }
    }

    func write32(_ ports: IoBus, _ port: UInt16, _ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { ports.write(port: port, size: 4, count: 1, data: $0) }
    }

    @Test("mechanism #1 finds the i440FX at 00.0 and the PIIX3 at 01.0; the address register reads back")
    func probe() throws {
        let (_, buses) = try machine()
        #expect(configRead(buses.ports, 0, 0) == 0x1237_8086)
        #expect(configRead(buses.ports, 1 << 3, 0) == 0x7000_8086)
        #expect(configRead(buses.ports, 1 << 3, 0x0E, size: 1) == 0x80, "multi-function")
        #expect(configRead(buses.ports, 2 << 3, 0) == 0xFFFF_FFFF, "an empty slot")
        #expect(configRead(buses.ports, 1 << 8, 0) == 0xFFFF_FFFF, "bus 1 does not exist")
        write32(buses.ports, 0xCF8, 0x8000_0000)
        var data = [UInt8](repeating: 0, count: 4)
        data.withUnsafeMutableBytes { buses.ports.read(port: 0xCF8, size: 4, count: 1, data: $0) }
        #expect(data == [0, 0, 0, 0x80])
    }

    @Test("PAM and PIRQ registers keep what firmware writes, as SeaBIOS does it")
    func chipsetRegisters() throws {
        let (_, buses) = try machine()
        configWrite(buses.ports, 0, 0x58, 0x3333_3000)
        configWrite(buses.ports, 0, 0x5C, 0x3333_3333)
        #expect(configRead(buses.ports, 0, 0x58) == 0x3333_3000)
        configWrite(buses.ports, 1 << 3, 0x60, 0x0B0B_0A0A)
        #expect(configRead(buses.ports, 1 << 3, 0x60) == 0x0B0B_0A0A)
    }

    @Test("BARs are mapped when enabled, follow the guest when moved, and a colliding BAR stays unmapped")
    func barMapping() throws {
        let (chipset, buses) = try machine()
        let function = TestFunction()
        try chipset.bus.add(function, slot: 3)
        let bdf: UInt32 = 3 << 3
        configWrite(buses.ports, bdf, 0x10, 0xFFFF_FFFF)
        #expect(configRead(buses.ports, bdf, 0x10) == 0xFFFF_FFC1)
        configWrite(buses.ports, bdf, 0x10, 0xC000)
        configWrite(buses.ports, bdf, 0x20, 0xFEBF_8000)
        configWrite(buses.ports, bdf, 0x24, 0)
        #expect(buses.mmio.mappings.isEmpty, "not before the command register enables it")
        configWrite(buses.ports, bdf, 0x04, 0x3, size: 2)
        var byte: [UInt8] = [0]
        byte.withUnsafeMutableBytes { buses.ports.read(port: 0xC010, size: 1, count: 1, data: $0) }
        #expect(byte == [0x11])
        byte.withUnsafeMutableBytes { buses.mmio.read(address: 0xFEBF_9000, data: $0) }
        #expect(byte == [0x22])
        configWrite(buses.ports, bdf, 0x20, 0xE000_0000)
        #expect(buses.mmio.mappings.map(\.base) == [0xE000_0000])
        // Onto the PCI config ports themselves: refused, logged, the bus keeps working.
        configWrite(buses.ports, bdf, 0x10, 0xCC0)
        #expect(configRead(buses.ports, 0, 0) == 0x1237_8086)
        byte.withUnsafeMutableBytes { buses.ports.read(port: 0xC010, size: 1, count: 1, data: $0) }
        #expect(byte == [0xFF], "the old I/O mapping is gone")
        configWrite(buses.ports, bdf, 0x04, 0, size: 2)
        #expect(buses.mmio.mappings.isEmpty)
    }

    @Test("INTx follows the PIRQ routes: slot 3 pin A is PIRQD, routed to IRQ 11")
    func intx() throws {
        let (chipset, buses) = try machine()
        var lines: [(UInt32, Bool)] = []
        chipset.bus.setIrqLine = { lines.append(($0, $1)) }
        let function = TestFunction()
        try chipset.bus.add(function, slot: 3)
        chipset.bus.setIntx(function, level: true)
        #expect(lines.isEmpty, "no route until firmware sets one")
        configWrite(buses.ports, 1 << 3, 0x60, 0x0B0B_0A0A)
        chipset.bus.setIntx(function, level: true)
        chipset.bus.setIntx(function, level: false)
        #expect(lines.map(\.0) == [11, 11] && lines.map(\.1) == [true, false])
        #expect(configRead(buses.ports, 3 << 3, 0x04) & 0x0008_0000 == 0, "interrupt status clear again")
    }

    @Test("the chipset's state round-trips, and a damaged one is refused")
    func state() throws {
        let (chipset, buses) = try machine()
        configWrite(buses.ports, 1 << 3, 0x60, 0x0B0B_0A0A)
        let saved = try chipset.saveState()
        let (fresh, freshBuses) = try machine()
        try fresh.loadState(StateSection(name: I440FX.sectionName, version: 1, payload: saved))
        #expect(configRead(freshBuses.ports, 1 << 3, 0x60) == 0x0B0B_0A0A)
        var damaged = saved
        damaged[8] ^= 0xFF  // the host bridge's vendor id
        #expect(throws: StateFormatError.self) { try fresh.loadState(StateSection(name: I440FX.sectionName, version: 1, payload: damaged)) }
    }
}
