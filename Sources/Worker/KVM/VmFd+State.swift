import CKVM

/// The VM-wide state ioctls migration and live update need: the in-kernel interrupt
/// controllers, the PIT and the KVM clock. Call them only while every vCPU is paused.
extension VmFd {
    static let irqchips = [CKVM_IRQCHIP_PIC_MASTER, CKVM_IRQCHIP_PIC_SLAVE, CKVM_IRQCHIP_IOAPIC]

    func getIrqchip(_ id: UInt32) throws(SystemError) -> kvm_irqchip {
        var chip = kvm_irqchip()
        chip.chip_id = id
        try ioctlChecked(fd, CKVM_GET_IRQCHIP, &chip, "KVM_GET_IRQCHIP \(id)")
        return chip
    }

    func setIrqchip(_ chip: kvm_irqchip) throws(SystemError) {
        var copy = chip
        try ioctlChecked(fd, CKVM_SET_IRQCHIP, &copy, "KVM_SET_IRQCHIP \(chip.chip_id)")
    }

    func getPIT() throws(SystemError) -> kvm_pit_state2 {
        var state = kvm_pit_state2()
        try ioctlChecked(fd, CKVM_GET_PIT2, &state, "KVM_GET_PIT2")
        return state
    }

    func setPIT(_ state: kvm_pit_state2) throws(SystemError) {
        var copy = state
        try ioctlChecked(fd, CKVM_SET_PIT2, &copy, "KVM_SET_PIT2")
    }

    func getClock() throws(SystemError) -> kvm_clock_data {
        var clock = kvm_clock_data()
        try ioctlChecked(fd, CKVM_GET_CLOCK, &clock, "KVM_GET_CLOCK")
        return clock
    }

    /// Sets the guest's kvmclock to `nanoseconds`: the time it had when it was paused, so guest
    /// time continues from there (QEMU does the same: time does not advance while stopped).
    func setClock(nanoseconds: UInt64) throws(SystemError) {
        var clock = kvm_clock_data()
        clock.clock = nanoseconds
        try ioctlChecked(fd, CKVM_SET_CLOCK, &clock, "KVM_SET_CLOCK")
    }
}
