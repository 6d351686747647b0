import CKVM
import Shared

/// The VM-wide in-kernel devices: both PICs and the IOAPIC, the PIT, and the kvmclock.
struct PlatformState {
    static let sectionName = "kvm.platform"
    static let sectionVersion: UInt32 = 1

    var irqchips: [kvm_irqchip]
    var pit: kvm_pit_state2
    var clockNanoseconds: UInt64

    static func capture(_ vm: VmFd) throws(SystemError) -> PlatformState {
        var chips: [kvm_irqchip] = []
        for id in VmFd.irqchips { chips.append(try vm.getIrqchip(id)) }
        return PlatformState(irqchips: chips, pit: try vm.getPIT(), clockNanoseconds: try vm.getClock().clock)
    }

    func restore(to vm: VmFd) throws(SystemError) {
        for chip in irqchips { try vm.setIrqchip(Self.withLinesLow(chip)) }
        try vm.setPIT(pit)
        try vm.setClock(nanoseconds: clockNanoseconds)
    }

    /// A PIC as a new VM must take it: every input line low (`last_irr` 0), the pending
    /// requests (`irr`) kept. In a new VM every interrupt source's line starts low, so a line
    /// saved high would hide the next rising edge. The PIT pulses IRQ0 (high, then low) on a
    /// kernel thread; a capture between the two saved the line high, and the new VM lost its
    /// first pulse. The PIT's reinjection waits for each pulse to be acknowledged, so its
    /// timer then stopped for good, and a guest sleeping in `hlt` never woke (about one live
    /// update or migration in a few hundred).
    static func withLinesLow(_ chip: kvm_irqchip) -> kvm_irqchip {
        guard chip.chip_id == CKVM_IRQCHIP_PIC_MASTER || chip.chip_id == CKVM_IRQCHIP_PIC_SLAVE else { return chip }
        var chip = chip
        chip.chip.pic.last_irr = 0
        return chip
    }

    func encode() -> [UInt8] {
        var encoder = StateEncoder()
        encoder.u32(UInt32(irqchips.count))
        for chip in irqchips { encoder.raw(chip) }
        encoder.raw(pit)
        encoder.u64(clockNanoseconds)
        return encoder.bytes
    }

    static func decode(_ section: StateSection) throws -> PlatformState {
        guard section.version == sectionVersion else {
            throw StateFormatError.malformed("section '\(section.name)' has version \(section.version); this cprvmm reads version \(sectionVersion)")
        }
        var decoder = StateDecoder(section.payload, section: section.name)
        let count = Int(try decoder.u32())
        guard count == VmFd.irqchips.count else { throw StateFormatError.malformed("section '\(section.name)': \(count) interrupt controllers, expected \(VmFd.irqchips.count)") }
        var chips: [kvm_irqchip] = []
        for _ in 0..<count { chips.append(try decoder.raw(kvm_irqchip.self)) }
        let state = PlatformState(irqchips: chips, pit: try decoder.raw(kvm_pit_state2.self), clockNanoseconds: try decoder.u64())
        try decoder.finish()
        return state
    }
}
