import Shared

/// The PC's PCI side as QEMU's `pc` machine has it: the i440FX host bridge at 00:00.0 and the
/// PIIX3 PCI-to-ISA bridge at 00:01.0, on a `PciBus` at 0xcf8. Firmware finds the chipset by
/// these ids and programs the PAM registers (shadow RAM) and the PIRQ routes (INTx → ISA IRQ).
///
/// The BIOS area 0xc0000-0xfffff is always writable RAM here (MachineMemory): the PAM
/// registers keep what firmware writes, and SeaBIOS's copy of itself into the area finds RAM.
/// The one difference from a real i440FX: an OS could write into the BIOS area after POST
/// locked it.
final class I440FX: Device {
    static let hostBridgeSlot: UInt8 = 0
    static let isaBridgeSlot: UInt8 = 1
    static let pamOffset = 0x59
    static let pirqRouteOffset = 0x60
    static let sectionName = "pci.i440fx"
    static let sectionVersion: UInt32 = 1
    /// QEMU gives every PCI function this subsystem id; SeaBIOS reads it to say "QEMU".
    static let qemuSubsystemVendor: UInt16 = 0x1AF4, qemuSubsystem: UInt16 = 0x1100

    let bus: PciBus
    let hostBridge = ChipsetFunction(name: "i440FX host bridge", config: I440FX.hostBridgeConfig())
    let isaBridge = ChipsetFunction(name: "PIIX3 ISA bridge", config: I440FX.isaBridgeConfig())

    init(buses: Buses) throws {
        bus = PciBus(buses: buses)
        try bus.add(hostBridge, slot: I440FX.hostBridgeSlot)
        try bus.add(isaBridge, slot: I440FX.isaBridgeSlot)
        bus.pirqRoute = { [unowned self] pirq in isaBridge.config.read(I440FX.pirqRouteOffset + pirq, size: 1).lowByte }
    }

    static func hostBridgeConfig() -> PciConfigSpace {
        var config = PciConfigSpace(
            vendor: 0x8086, device: 0x1237, classCode: 0x06_0000, revision: 0x02,
            subsystemVendor: qemuSubsystemVendor, subsystem: qemuSubsystem)
        config.setWritable(pamOffset, 4, 0xFFFF_FFFF)  // PAM0-PAM3
        config.setWritable(pamOffset + 4, 3, 0xFF_FFFF)  // PAM4-PAM6
        config.setWritable(0x72, 1, 0xFF)  // SMRAM
        return config
    }

    static func isaBridgeConfig() -> PciConfigSpace {
        // Multi-function (header type 0x80), as PIIX3 is with its IDE and USB functions.
        var config = PciConfigSpace(
            vendor: 0x8086, device: 0x7000, classCode: 0x06_0100, headerType: 0x80,
            subsystemVendor: qemuSubsystemVendor, subsystem: qemuSubsystem)
        for pirq in 0..<4 {
            config.put8(pirqRouteOffset + pirq, 0x80)  // routing disabled until firmware sets it
        }
        config.setWritable(pirqRouteOffset, 4, 0x8F8F_8F8F)
        return config
    }

    var id: String { "i440fx" }
    var topology: String { "i440FX + PIIX3 on pci.0 (config mechanism 1 at 0xcf8)" }

    func attach(to buses: Buses) throws {
        try buses.ports.register(bus, name: "PCI config (0xcf8)", base: PciBus.configAddressPort, count: PciBus.portCount)
    }

    var stateSection: (name: String, version: UInt32)? { (I440FX.sectionName, I440FX.sectionVersion) }

    func saveState() throws -> [UInt8] {
        var encoder = StateEncoder()
        encoder.u32(bus.configAddress)
        encoder.lengthPrefixedBytes(bus.withConfig(hostBridge) { $0.bytes })
        encoder.lengthPrefixedBytes(bus.withConfig(isaBridge) { $0.bytes })
        return encoder.bytes
    }

    func loadState(_ section: StateSection) throws {
        var decoder = StateDecoder(section.payload, section: section.name)
        let address = try decoder.u32()
        let host = try decoder.lengthPrefixedBytes(limit: PciConfigSpace.size)
        let isa = try decoder.lengthPrefixedBytes(limit: PciConfigSpace.size)
        try decoder.finish()
        do {
            try bus.withConfig(hostBridge) { try $0.restore(host) }
            try bus.withConfig(isaBridge) { try $0.restore(isa) }
        } catch {
            throw StateFormatError.malformed("section '\(section.name)': \(error)")
        }
        bus.setConfigAddress(address & 0x80FF_FFFC)
    }
}

/// A chipset function with no BARs: its config space is all there is to it.
final class ChipsetFunction: PciFunction {
    let pciName: String
    var config: PciConfigSpace

    init(name: String, config: PciConfigSpace) {
        self.pciName = name
        self.config = config
    }

    func barTarget(_ index: Int) -> PciBarTarget? { nil }
}

extension UInt32 {
    var lowByte: UInt8 { UInt8(truncatingIfNeeded: self) }
}
