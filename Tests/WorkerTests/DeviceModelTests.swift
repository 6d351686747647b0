import Shared
import Testing

@testable import Worker

/// A port and MMIO device that records what reaches it.
private final class RecordingDevice: PortDevice, MmioDevice, Device {
    let id: String
    var section: (name: String, version: UInt32)?
    var stored: [UInt8] = []
    var quiesced = 0, resumed = 0
    var lastWrite: (offset: UInt64, bytes: [UInt8])?

    init(id: String, section: (String, UInt32)? = nil) {
        self.id = id
        self.section = section
    }

    var topology: String { "recorder" }
    var stateSection: (name: String, version: UInt32)? { section }
    func saveState() throws -> [UInt8] { stored }
    func loadState(_ section: StateSection) throws { stored = section.payload }
    func quiesce() { quiesced += 1 }
    func resume() { resumed += 1 }

    func portRead(offset: UInt16, into data: UnsafeMutableRawBufferPointer) {
        data.initializeMemory(as: UInt8.self, repeating: UInt8(offset))
    }
    func portWrite(offset: UInt16, from data: UnsafeRawBufferPointer) { lastWrite = (UInt64(offset), Array(data)) }
    func mmioRead(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        data.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: offset))
    }
    func mmioWrite(offset: UInt64, from data: UnsafeRawBufferPointer) { lastWrite = (offset, Array(data)) }
}

@Suite struct AddressBusTests {
    @Test("lookups find the mapping that covers an address, and nothing in the gaps")
    func lookup() throws {
        let bus = AddressBus<Int>(unit: "MMIO", limit: 1 << 32)
        try bus.register(2, name: "b", base: 0x2000, size: 0x100)
        try bus.register(1, name: "a", base: 0x1000, size: 0x10)
        try bus.register(3, name: "c", base: 0x3000, size: 1)
        #expect(bus.lookup(0x1000)?.target == 1)
        #expect(bus.lookup(0x100F)?.target == 1)
        #expect(bus.lookup(0x1010) == nil)
        #expect(bus.lookup(0x20FF)?.target == 2)
        #expect(bus.lookup(0x3000)?.target == 3)
        #expect(bus.lookup(0x3001) == nil)
        #expect(bus.lookup(0) == nil)
        #expect(bus.mappings.map(\.name) == ["a", "b", "c"])
    }

    @Test("overlapping, empty and out-of-range mappings are errors naming both holders")
    func refusals() throws {
        let bus = AddressBus<Int>(unit: "I/O ports", limit: 0x10000)
        try bus.register(1, name: "COM1", base: 0x3F8, size: 8)
        let overlap = #expect(throws: ConfigurationError.self) { try bus.register(2, name: "other", base: 0x3FF, size: 2) }
        #expect("\(overlap!)".contains("I/O ports 0x3ff-0x400 overlap COM1 at 0x3f8-0x3ff"))
        #expect(throws: ConfigurationError.self) { try bus.register(2, name: "empty", base: 0x100, size: 0) }
        #expect(throws: ConfigurationError.self) { try bus.register(2, name: "past the end", base: 0xFFFF, size: 2) }
        #expect(throws: ConfigurationError.self) { try bus.register(2, name: "huge", base: 1, size: UInt64.max) }
        #expect(bus.mappings.count == 1)
    }

    @Test("a moved mapping is found at its new place only (a guest relocating a BAR)")
    func move() throws {
        let bus = AddressBus<Int>(unit: "MMIO", limit: 1 << 32)
        try bus.register(7, name: "bar", base: 0xE000_0000, size: 0x1000)
        let before = bus.mappings
        #expect(bus.unregister(name: "bar", base: 0xE000_0000))
        #expect(!bus.unregister(name: "bar", base: 0xE000_0000))
        try bus.register(7, name: "bar", base: 0xF000_0000, size: 0x1000)
        #expect(bus.lookup(0xE000_0000) == nil)
        #expect(bus.lookup(0xF000_0FFF)?.target == 7)
        #expect(before.first?.base == 0xE000_0000, "a snapshot taken before the move stays as it was")
    }
}

@Suite struct MmioBusTests {
    @Test("MMIO reaches a device at its offset; straddling or unmapped accesses read all ones")
    func dispatch() throws {
        let bus = MmioBus()
        let device = RecordingDevice(id: "d")
        try bus.register(device, name: "d", base: 0xFEB0_0000, size: 0x100)
        var data = [UInt8](repeating: 0, count: 4)
        data.withUnsafeMutableBytes { bus.read(address: 0xFEB0_0010, data: $0) }
        #expect(data == [0x10, 0x10, 0x10, 0x10])
        data.withUnsafeMutableBytes { bus.read(address: 0xFEB0_00FE, data: $0) }
        #expect(data == [0xFF, 0xFF, 0xFF, 0xFF])
        data.withUnsafeMutableBytes { bus.read(address: 0x1_0000_0000, data: $0) }
        #expect(data == [0xFF, 0xFF, 0xFF, 0xFF])
        [1, 2].withUnsafeBytes { bus.write(address: 0xFEB0_0020, data: UnsafeRawBufferPointer(rebasing: $0[0..<2])) }
        #expect(device.lastWrite?.offset == 0x20)
    }
}

@Suite struct DeviceRegistryTests {
    func registry() -> DeviceRegistry { DeviceRegistry(buses: Buses(ports: IoBus(), mmio: MmioBus())) }

    @Test("duplicate ids and sections are configuration errors")
    func duplicates() throws {
        let devices = registry()
        try devices.add(RecordingDevice(id: "a", section: ("dev.a", 1)))
        #expect(throws: ConfigurationError.self) { try devices.add(RecordingDevice(id: "a")) }
        #expect(throws: ConfigurationError.self) { try devices.add(RecordingDevice(id: "b", section: ("dev.a", 1))) }
        #expect(devices.devices.count == 1)
    }

    @Test("save writes each device's section; load hands it back and refuses other versions")
    func saveAndLoad() throws {
        let devices = registry()
        let a = RecordingDevice(id: "a", section: ("dev.a", 3))
        a.stored = [1, 2, 3]
        try devices.add(a)
        try devices.add(RecordingDevice(id: "stateless"))
        #expect(devices.device(forSection: "dev.a") === a)
        try devices.load(StateSection(name: "dev.a", version: 3, payload: [9]))
        #expect(a.stored == [9])
        let error = #expect(throws: StateFormatError.self) { try devices.load(StateSection(name: "dev.a", version: 4, payload: [])) }
        #expect("\(error!)".contains("version 4; this cprvmm reads version 3"))
        #expect(throws: StateFormatError.self) { try devices.load(StateSection(name: "dev.b", version: 1, payload: [])) }
        devices.quiesce()
        devices.resume()
        #expect(a.quiesced == 1 && a.resumed == 1)
        #expect(devices.topology == ["a: recorder", "stateless: recorder"])
    }
}

@Suite struct MachineDescriptionTests {
    func description(devices: [String]?) -> MachineDescription {
        MachineDescription(vcpuCount: 1, blocks: [.init(name: "pc.ram", size: 1 << 20, backing: "memfd", shared: true, copied: true)],
                           devices: devices, wasRunning: true, vmStarted: 1.5)
    }

    @Test("the topology travels in the section and round-trips")
    func roundTrip() throws {
        let original = description(devices: ["com1: isa-serial iobase=0x3f8 irq=4"])
        let decoded = try MachineDescription.decode(StateSection(name: "machine", version: 2, payload: original.encode()))
        #expect(decoded == original)
    }

    @Test("a version 1 section (no topology) still loads and skips the device check")
    func version1() throws {
        var v1 = description(devices: nil).encode()
        v1.removeLast(4)  // version 2 appends the device count
        let decoded = try MachineDescription.decode(StateSection(name: "machine", version: 1, payload: v1))
        #expect(decoded.devices == nil)
        #expect(description(devices: ["com1: x"]).mismatch(with: decoded) == nil)
    }

    @Test("a VM with other devices refuses the state, naming the difference", arguments: [
        (["com1: isa-serial iobase=0x3f8 irq=4"], [String](), "the incoming VM has device com1: isa-serial iobase=0x3f8 irq=4, this one has none"),
        ([], ["disk0: virtio-blk-pci"], "this VM has device disk0: virtio-blk-pci, the incoming one has none"),
        (["disk0: virtio-blk-pci addr=03.0"], ["disk0: virtio-blk-pci addr=04.0"], "device disk0 is 'virtio-blk-pci addr=03.0' in the incoming VM and 'virtio-blk-pci addr=04.0' here"),
        (["a: x", "b: y"], ["b: y", "a: x"], "the devices were created in another order"),
    ])
    func deviceMismatch(incoming: [String], mine: [String], expected: String) {
        let message = description(devices: mine).mismatch(with: description(devices: incoming))
        #expect(message?.contains(expected) == true, "\(message ?? "nil")")
    }
}
