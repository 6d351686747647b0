import Shared
import Testing

@testable import Worker

@Suite struct FirmwareConfigTests {
    /// A fresh device each time: tests run in parallel.
    static var device: FirmwareConfig {
        FirmwareConfig.pc(
            ramRanges: [(0, 128 << 20), (4 << 30, (4 << 30) + (1 << 30))], ramSize: (128 << 20) + (1 << 30), cpus: 2,
            reserved: [(0xFEFF_C000, 0x4000)], bootOrder: ["/pci@i0cf8/*@4", "HALT"])
    }

    /// Selects `key` and reads `count` bytes through the data port, as SeaBIOS does (`rep insb`).
    static func read(_ device: FirmwareConfig, _ key: UInt16, count: Int) -> [UInt8] {
        withUnsafeBytes(of: key.littleEndian) { device.portWrite(offset: 0, from: $0) }
        var data = [UInt8](repeating: 0xAA, count: count)
        data.withUnsafeMutableBytes { device.portWrite(offset: 1, from: UnsafeRawBufferPointer($0)) }  // ignored
        data.withUnsafeMutableBytes { buffer in
            for i in 0..<count { device.portRead(offset: 1, into: UnsafeMutableRawBufferPointer(rebasing: buffer[i..<i + 1])) }
        }
        return data
    }

    @Test("signature, ID without DMA, CPU counts and boot menu off, little-endian")
    func legacyItems() {
        let device = Self.device
        #expect(Self.read(device, 0, count: 4) == Array("QEMU".utf8))
        #expect(Self.read(device, 1, count: 4) == [1, 0, 0, 0], "no DMA bit: SeaBIOS would spin on DMA it cannot get")
        #expect(Self.read(device, 5, count: 2) == [2, 0])
        #expect(Self.read(device, 0x0F, count: 2) == [2, 0])
        #expect(Self.read(device, 0x0E, count: 2) == [0, 0])
        #expect(Self.read(device, 0x8000, count: 2) == [0, 0], "no ACPI tables: an unknown key reads zeros")
        #expect(Self.read(device, 0, count: 6) == Array("QEMU".utf8) + [0, 0], "past the end reads zeros")
    }

    @Test("the file directory is big-endian, sorted, and points at e820, bootorder and boot-fail-wait")
    func files() throws {
        let device = Self.device
        let count = Self.read(device, 0x19, count: 4)
        #expect(count == [0, 0, 0, 3])
        let directory = Self.read(device, 0x19, count: 4 + 3 * 64)
        var found: [String: (size: Int, select: UInt16)] = [:]
        for i in 0..<3 {
            let entry = Array(directory[(4 + 64 * i)..<(4 + 64 * (i + 1))])
            let size = entry[0..<4].reduce(0) { $0 << 8 | Int($1) }
            let select = UInt16(entry[4]) << 8 | UInt16(entry[5])
            let name = String(decoding: entry[8...].prefix { $0 != 0 }, as: UTF8.self)
            found[name] = (size, select)
        }
        #expect(found.keys.sorted() == ["bootorder", "etc/boot-fail-wait", "etc/e820"])
        let e820 = try #require(found["etc/e820"])
        #expect(e820.size == 3 * 20)
        let table = Self.read(device, e820.select, count: e820.size)
        func le64(_ at: Int) -> UInt64 { table[at..<at + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        #expect(le64(0) == 0 && le64(8) == 128 << 20 && table[16] == 1)
        #expect(le64(20) == 4 << 30 && le64(28) == 1 << 30 && table[36] == 1)
        #expect(le64(40) == 0xFEFF_C000 && le64(48) == 0x4000 && table[56] == 2)
        let order = try #require(found["bootorder"])
        #expect(String(decoding: Self.read(device, order.select, count: order.size).prefix { $0 != 0 }, as: UTF8.self) == "/pci@i0cf8/*@4\nHALT\n")
        let wait = try #require(found["etc/boot-fail-wait"])
        #expect(Self.read(device, wait.select, count: 4) == [0xFF, 0xFF, 0xFF, 0xFF], "wait forever instead of a reset")
    }

    @Test("a read interrupted by a save goes on where it stopped after a load")
    func state() throws {
        let device = Self.device
        _ = Self.read(device, 0, count: 2)
        let saved = try device.saveState()
        let fresh = Self.device
        try fresh.loadState(StateSection(name: FirmwareConfig.sectionName, version: 1, payload: saved))
        var rest = [UInt8](repeating: 0, count: 2)
        rest.withUnsafeMutableBytes { buffer in
            for i in 0..<2 { fresh.portRead(offset: 1, into: UnsafeMutableRawBufferPointer(rebasing: buffer[i..<i + 1])) }
        }
        #expect(rest == Array("MU".utf8))
    }
}

@Suite struct CmosRtcTests {
    /// 2026-12-03 10:20:30 UTC, a Thursday.
    static let instant: Int64 = 1_796_293_230

    static func rtc(ram: UInt64 = 128 << 20, above4G: UInt64 = 0, cpus: Int = 1) -> CmosRtc {
        CmosRtc(ramBelow4G: ram, ramAbove4G: above4G, cpus: cpus, now: { instant })
    }

    @Test("the time reads in BCD, 24-hour, with the century")
    func time() {
        let rtc = Self.rtc()
        #expect([0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32].map { rtc.peek($0) } == [0x30, 0x20, 0x10, 0x05, 0x03, 0x12, 0x26, 0x20])
        #expect(rtc.peek(0x0A) & 0x80 == 0, "never update-in-progress")
        #expect(rtc.peek(0x0D) == 0x80, "valid RAM and time")
    }

    @Test("binary mode and a guest that sets the clock (an offset; the host clock is untouched)")
    func setClock() throws {
        let rtc = Self.rtc()
        rtc.poke(0x0B, 0x06)  // binary, 24-hour
        #expect(rtc.peek(0x04) == 10)
        rtc.poke(0x04, 15)
        #expect(rtc.peek(0x04) == 15)
        #expect(rtc.peek(0x02) == 20)
        let fresh = Self.rtc()
        try fresh.loadState(StateSection(name: CmosRtc.sectionName, version: 1, payload: try rtc.saveState()))
        #expect(fresh.peek(0x04) == 15, "the guest's clock travels with the state")
    }

    @Test("memory sizes as SeaBIOS and OSes read them, and the CPU count")
    func memory() {
        let rtc = Self.rtc(ram: 3 << 30, above4G: 1 << 30, cpus: 4)
        #expect(rtc.peek(0x15) == 0x80 && rtc.peek(0x16) == 0x02, "640 KiB base memory")
        #expect(UInt16(rtc.peek(0x17)) | UInt16(rtc.peek(0x18)) << 8 == 0xFFFF, "extended memory saturates")
        let above16M = UInt32(rtc.peek(0x34)) | UInt32(rtc.peek(0x35)) << 8
        #expect(above16M == UInt32(((3 << 30) - (16 << 20)) >> 16))
        let above4G = UInt32(rtc.peek(0x5B)) | UInt32(rtc.peek(0x5C)) << 8 | UInt32(rtc.peek(0x5D)) << 16
        #expect(above4G == UInt32((1 << 30) >> 16))
        #expect(rtc.peek(0x5F) == 3)
        let sum = (0x10...0x2D).reduce(0) { $0 + Int(rtc.peek($1)) }
        #expect(Int(rtc.peek(0x2E)) << 8 | Int(rtc.peek(0x2F)) == sum, "the checksum matches")
    }

    @Test("register C clears on read; C and D ignore writes; the index port masks the NMI bit")
    func registers() {
        let rtc = Self.rtc()
        rtc.poke(0x0C, 0xFF)
        rtc.poke(0x0D, 0)
        #expect(rtc.peek(0x0C) == 0 && rtc.peek(0x0D) == 0x80)
        [UInt8(0x80 | 0x5F)].withUnsafeBytes { rtc.portWrite(offset: 0, from: $0) }
        var value: [UInt8] = [0]
        value.withUnsafeMutableBytes { rtc.portRead(offset: 1, into: $0) }
        #expect(value == [0], "register 0x5f, 1 CPU")
    }

    @Test("a damaged state is refused")
    func damaged() {
        let rtc = Self.rtc()
        #expect(throws: StateFormatError.self) { try rtc.loadState(StateSection(name: CmosRtc.sectionName, version: 1, payload: [1, 2, 3])) }
    }
}

@Suite struct SystemControlPortTests {
    @Test("port 0x92 reads A20 on and never the reset bit; bit 0 asks for a reset")
    func port92() {
        var resets: [String] = []
        let port = SystemControlPort { resets.append($0) }
        var value: [UInt8] = [0]
        value.withUnsafeMutableBytes { port.portRead(offset: 0, into: $0) }
        #expect(value == [0x02])
        [UInt8(0x02)].withUnsafeBytes { port.portWrite(offset: 0, from: $0) }
        #expect(resets.isEmpty)
        [UInt8(0x03)].withUnsafeBytes { port.portWrite(offset: 0, from: $0) }
        #expect(resets.count == 1)
    }
}
