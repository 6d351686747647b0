import Glibc
import Shared

/// The MC146818 RTC and its CMOS RAM at ports 0x70 (index; bit 7 masks NMI) and 0x71 (data),
/// as QEMU's `pc` machine fills it: the time (BCD, 24-hour, as a PC BIOS expects), the memory
/// sizes firmware reads (0x15-0x18, 0x30-0x31, 0x34-0x35, 0x5b-0x5d), the CPU count (0x5f) and
/// a valid checksum. The clock runs from the host's UTC time plus the offset a guest sets by
/// writing the time; that offset travels with the state, so the guest's clock carries on.
/// No RTC interrupts: firmware and the built-in guests poll (update, alarm and periodic
/// interrupts would be a later addition).
final class CmosRtc: PortDevice, Device {
    static let indexPort: UInt16 = 0x70
    static let sectionName = "cmos"
    static let sectionVersion: UInt32 = 1
    static let registerA = 0x0A, registerB = 0x0B, registerC = 0x0C, registerD = 0x0D
    static let centuryRegister = 0x32

    private let lock = Lock()
    private var ram = [UInt8](repeating: 0, count: 128)
    private var index = 0
    /// Guest time = host UTC + this many seconds.
    private var offsetSeconds: Int64 = 0
    /// The host's clock, injectable for tests.
    private let now: () -> Int64

    init(ramBelow4G: UInt64, ramAbove4G: UInt64, cpus: Int, now: @escaping () -> Int64 = { Int64(time(nil)) }) {
        self.now = now
        ram[CmosRtc.registerA] = 0x26  // 32.768 kHz time base, 1024 Hz rate
        ram[CmosRtc.registerB] = 0x02  // 24-hour, BCD, no interrupts
        ram[CmosRtc.registerD] = 0x80  // valid RAM and time
        ram[0x14] = 0x06  // equipment: a display adapter, a math coprocessor; no floppy
        // Base memory: 640 KiB.
        ram[0x15] = 0x80; ram[0x16] = 0x02
        // Extended memory 1 MiB-64 MiB in KiB (0x17/0x18 and its copy at 0x30/0x31).
        let extendedKiB = UInt64(min(max(Int64(ramBelow4G) - (1 << 20), 0) >> 10, 0xFFFF))
        ram[0x17] = UInt8(extendedKiB & 0xFF); ram[0x18] = UInt8(extendedKiB >> 8)
        ram[0x30] = ram[0x17]; ram[0x31] = ram[0x18]
        // Memory above 16 MiB (below 4 GiB) in 64 KiB units.
        let above16M = ramBelow4G > (16 << 20) ? min((ramBelow4G - (16 << 20)) >> 16, 0xFFFF) : 0
        ram[0x34] = UInt8(above16M & 0xFF); ram[0x35] = UInt8(above16M >> 8)
        // Memory above 4 GiB in 64 KiB units (24 bits).
        let above4G = ramAbove4G >> 16
        ram[0x5B] = UInt8(above4G & 0xFF); ram[0x5C] = UInt8((above4G >> 8) & 0xFF); ram[0x5D] = UInt8((above4G >> 16) & 0xFF)
        ram[0x5F] = UInt8(max(cpus - 1, 0))
        ram[0x3D] = 0x02  // boot from the hard disk first
        updateChecksum()
    }

    /// The standard checksum over 0x10-0x2d, kept at 0x2e/0x2f (big-endian).
    private func updateChecksum() {
        let sum = ram[0x10...0x2D].reduce(0) { $0 + Int($1) }
        ram[0x2E] = UInt8((sum >> 8) & 0xFF)
        ram[0x2F] = UInt8(sum & 0xFF)
    }

    func portRead(offset: UInt16, into data: UnsafeMutableRawBufferPointer) {
        let value: UInt8 = lock.withLock {
            guard offset == 1 else { return 0xFF }  // the index register is write-only
            return readRegister(index)
        }
        data.initializeMemory(as: UInt8.self, repeating: 0)
        data[0] = value
    }

    func portWrite(offset: UInt16, from data: UnsafeRawBufferPointer) {
        lock.withLock {
            if offset == 0 {
                index = Int(data[0] & 0x7F)
            } else {
                writeRegister(index, data[0])
            }
        }
    }

    private var binaryMode: Bool { ram[CmosRtc.registerB] & 0x04 != 0 }
    private var twentyFourHour: Bool { ram[CmosRtc.registerB] & 0x02 != 0 }

    private func readRegister(_ register: Int) -> UInt8 {
        switch register {
        case 0x00...0x09, CmosRtc.centuryRegister:
            return timeRegister(register)
        case CmosRtc.registerA:
            return ram[register] & 0x7F  // never "update in progress": the time is read whole
        case CmosRtc.registerC:
            let value = ram[register]
            ram[register] = 0  // reading C acknowledges its flags
            return value
        default:
            return ram[register]
        }
    }

    private func writeRegister(_ register: Int, _ value: UInt8) {
        switch register {
        case 0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, CmosRtc.centuryRegister:
            setTime(register, value)
        case CmosRtc.registerA:
            ram[register] = value & 0x7F
        case CmosRtc.registerC, CmosRtc.registerD:
            break  // read-only
        default:
            ram[register] = value
        }
    }

    /// Broken-down guest time now.
    private func guestTime() -> tm {
        var seconds = time_t(now() + offsetSeconds)
        var broken = tm()
        gmtime_r(&seconds, &broken)
        return broken
    }

    private func encode(_ value: Int) -> UInt8 {
        binaryMode ? UInt8(value) : UInt8((value / 10) << 4 | (value % 10))
    }

    private func decode(_ value: UInt8) -> Int {
        binaryMode ? Int(value) : Int(value >> 4) * 10 + Int(value & 0xF)
    }

    private func timeRegister(_ register: Int) -> UInt8 {
        let t = guestTime()
        switch register {
        case 0x00: return encode(Int(t.tm_sec))
        case 0x02: return encode(Int(t.tm_min))
        case 0x04:
            if twentyFourHour { return encode(Int(t.tm_hour)) }
            let hour12 = Int(t.tm_hour) % 12 == 0 ? 12 : Int(t.tm_hour) % 12
            return encode(hour12) | (t.tm_hour >= 12 ? 0x80 : 0)
        case 0x06: return encode(Int(t.tm_wday) + 1)
        case 0x07: return encode(Int(t.tm_mday))
        case 0x08: return encode(Int(t.tm_mon) + 1)
        case 0x09: return encode(Int(t.tm_year) % 100)
        case CmosRtc.centuryRegister: return encode((Int(t.tm_year) + 1900) / 100)
        default: return ram[register]  // alarm registers
        }
    }

    /// A write to a time register moves the guest's clock; the host's clock is untouched.
    private func setTime(_ register: Int, _ value: UInt8) {
        var t = guestTime()
        let decoded = Int32(decode(value & (register == 0x04 ? 0x7F : 0xFF)))
        switch register {
        case 0x00: t.tm_sec = decoded
        case 0x02: t.tm_min = decoded
        case 0x04:
            if twentyFourHour { t.tm_hour = decoded } else { t.tm_hour = decoded % 12 + (value & 0x80 != 0 ? 12 : 0) }
        case 0x07: t.tm_mday = decoded
        case 0x08: t.tm_mon = decoded - 1
        case 0x09: t.tm_year = Int32((Int(t.tm_year) + 1900) / 100 * 100 + Int(decoded) - 1900)
        case CmosRtc.centuryRegister: t.tm_year = Int32(Int(decoded) * 100 + Int(t.tm_year) % 100 - 1900)
        default: return  // day of week follows from the date
        }
        let target = timegm(&t)
        guard target != -1 else { return }
        offsetSeconds = Int64(target) - now()
    }

    var id: String { "rtc" }
    var topology: String { "mc146818 iobase=0x70" }

    func attach(to buses: Buses) throws {
        try buses.ports.register(self, name: "CMOS/RTC", base: CmosRtc.indexPort, count: 2)
    }

    var stateSection: (name: String, version: UInt32)? { (CmosRtc.sectionName, CmosRtc.sectionVersion) }

    func saveState() throws -> [UInt8] {
        lock.withLock {
            var encoder = StateEncoder()
            encoder.lengthPrefixedBytes(ram)
            encoder.u8(UInt8(index))
            encoder.u64(UInt64(bitPattern: offsetSeconds))
            return encoder.bytes
        }
    }

    func loadState(_ section: StateSection) throws {
        var decoder = StateDecoder(section.payload, section: section.name)
        let saved = try decoder.lengthPrefixedBytes(limit: 128)
        let savedIndex = Int(try decoder.u8())
        let offset = Int64(bitPattern: try decoder.u64())
        try decoder.finish()
        guard saved.count == 128, savedIndex < 128 else {
            throw StateFormatError.malformed("section '\(section.name)': \(saved.count) bytes of CMOS and index \(savedIndex)")
        }
        lock.withLock {
            ram = saved
            index = savedIndex
            offsetSeconds = offset
        }
    }

    /// For tests and `info` commands: register `register` as the guest would read it.
    func peek(_ register: Int) -> UInt8 { lock.withLock { readRegister(register) } }
    func poke(_ register: Int, _ value: UInt8) { lock.withLock { writeRegister(register, value) } }
}
