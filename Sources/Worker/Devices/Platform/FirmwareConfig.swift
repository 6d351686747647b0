import Shared

/// QEMU's fw_cfg interface at ports 0x510 (16-bit selector) and 0x511 (data, read a byte at a
/// time; `rep insb` reads a whole item in one exit): how SeaBIOS learns the RAM size, the
/// memory map, the CPU count and the boot order. The traditional interface only: the ID item
/// does not offer DMA, and firmware then reads through the data port. Items are fixed when
/// the VM is built; the selector and read position travel in the state, so an update in the
/// middle of a read goes on where it was.
final class FirmwareConfig: PortDevice, Device {
    static let selectorPort: UInt16 = 0x510
    static let sectionName = "fw_cfg"
    static let sectionVersion: UInt32 = 1

    enum Key {
        static let signature: UInt16 = 0x00
        static let id: UInt16 = 0x01
        static let uuid: UInt16 = 0x02
        static let ramSize: UInt16 = 0x03
        static let nographic: UInt16 = 0x04
        static let cpuCount: UInt16 = 0x05
        static let numa: UInt16 = 0x0D
        static let bootMenu: UInt16 = 0x0E
        static let maxCpus: UInt16 = 0x0F
        static let fileDirectory: UInt16 = 0x19
        static let firstFile: UInt16 = 0x20
        static let irq0Override: UInt16 = 0x8002
    }

    private let lock = Lock()
    private let items: [UInt16: [UInt8]]
    private let fileNames: [String]
    private var selector: UInt16 = 0
    private var position = 0

    /// `items`: selector → data; `files`: name → data, given selectors from 0x20 in order.
    init(items: [UInt16: [UInt8]], files: [(name: String, data: [UInt8])]) {
        var all = items
        var directory = FirmwareConfig.bigEndian(UInt32(files.count))
        for (index, file) in files.enumerated() {
            let select = Key.firstFile + UInt16(index)
            all[select] = file.data
            directory += FirmwareConfig.bigEndian(UInt32(file.data.count))
            directory += FirmwareConfig.bigEndian(select)
            directory += [0, 0]
            var name = Array(file.name.utf8.prefix(55))
            name += [UInt8](repeating: 0, count: 56 - name.count)
            directory += name
        }
        all[Key.fileDirectory] = directory
        self.items = all
        self.fileNames = files.map(\.name)
    }

    /// The file directory is big-endian, unlike every other item.
    static func bigEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }

    /// The item behind `selector`, as firmware reads it (an unknown one reads as empty).
    func item(_ selector: UInt16) -> [UInt8]? { items[selector] }

    func portRead(offset: UInt16, into data: UnsafeMutableRawBufferPointer) {
        lock.withLock {
            guard offset == 1 else {
                data.initializeMemory(as: UInt8.self, repeating: 0)  // the selector reads as 0
                return
            }
            let item = items[selector & 0x3FFF | (selector & 0x8000)] ?? []
            for i in 0..<data.count {
                // Past the end, and for a missing item, the data port reads 0 (as QEMU's does).
                data[i] = position < item.count ? item[position] : 0
                if position < item.count { position += 1 }
            }
        }
    }

    func portWrite(offset: UInt16, from data: UnsafeRawBufferPointer) {
        guard offset == 0, data.count == 2 else { return }  // writes through the data port are ignored
        lock.withLock {
            selector = UInt16(data[0]) | UInt16(data[1]) << 8
            position = 0
        }
    }

    var id: String { "fw_cfg" }
    var topology: String { "fw_cfg iobase=0x510 files=\(fileNames.joined(separator: ","))" }

    func attach(to buses: Buses) throws {
        try buses.ports.register(self, name: "fw_cfg", base: FirmwareConfig.selectorPort, count: 2)
    }

    var stateSection: (name: String, version: UInt32)? { (FirmwareConfig.sectionName, FirmwareConfig.sectionVersion) }

    func saveState() throws -> [UInt8] {
        lock.withLock {
            var encoder = StateEncoder()
            encoder.u16(selector)
            encoder.u32(UInt32(position))
            return encoder.bytes
        }
    }

    func loadState(_ section: StateSection) throws {
        var decoder = StateDecoder(section.payload, section: section.name)
        let savedSelector = try decoder.u16()
        let savedPosition = Int(try decoder.u32())
        try decoder.finish()
        lock.withLock {
            selector = savedSelector
            // A position past the item reads zeros, as it would have: no need to refuse it.
            position = min(savedPosition, items[savedSelector]?.count ?? 0)
        }
    }
}

extension FirmwareConfig {
    /// The items QEMU's `pc` machine gives SeaBIOS, for this VM's RAM, CPUs and boot order.
    static func pc(ramRanges: [BootInfo.Range], ramSize: UInt64, cpus: Int, reserved: [(start: UInt64, size: UInt64)],
                   bootOrder: [String]) -> FirmwareConfig {
        func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
        var items: [UInt16: [UInt8]] = [:]
        items[Key.signature] = Array("QEMU".utf8)
        items[Key.id] = le(UInt32(1))  // traditional interface, no DMA
        items[Key.uuid] = [UInt8](repeating: 0, count: 16)
        items[Key.ramSize] = le(ramSize)
        items[Key.nographic] = le(UInt16(1))
        items[Key.cpuCount] = le(UInt16(cpus))
        items[Key.maxCpus] = le(UInt16(cpus))
        items[Key.bootMenu] = le(UInt16(0))
        // No NUMA nodes: the node count, then one (zero) node per CPU.
        items[Key.numa] = [UInt8](repeating: 0, count: 8 * (1 + cpus))
        items[Key.irq0Override] = le(UInt32(1))
        var e820: [UInt8] = []
        for range in ramRanges {
            e820 += le(range.start) + le(range.end - range.start) + le(UInt32(1))  // E820_RAM
        }
        for area in reserved {
            e820 += le(area.start) + le(area.size) + le(UInt32(2))  // E820_RESERVED
        }
        var files: [(name: String, data: [UInt8])] = [("etc/e820", e820)]
        if !bootOrder.isEmpty {
            files.append(("bootorder", Array((bootOrder.joined(separator: "\n") + "\n").utf8) + [0]))
        }
        // Without a bootable device SeaBIOS retries after this many ms (QEMU's -boot reboot-timeout);
        // -1 waits forever instead of rebooting, which a VM without reset support needs.
        files.append(("etc/boot-fail-wait", le(UInt32.max)))
        files.sort { $0.name < $1.name }  // QEMU keeps its directory sorted by name
        return FirmwareConfig(items: items, files: files)
    }
}
