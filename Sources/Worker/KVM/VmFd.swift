import CKVM
import Glibc

/// A KVM virtual machine: memory slots, in-kernel irqchip and PIT, interrupt lines, vCPUs.
public final class VmFd {
    let fd: Int32
    let kvm: Kvm

    init(fd: Int32, kvm: Kvm) {
        self.fd = fd
        self.kvm = kvm
    }

    deinit { close(fd) }

    /// Maps a slot `MachineMemory` laid out; `logDirty` makes KVM log the pages the guest writes.
    func setUserMemoryRegion(slot: MachineMemory.Slot, logDirty: Bool = false) throws(SystemError) {
        var region = kvm_userspace_memory_region(
            slot: slot.number,
            flags: (slot.readOnly ? UInt32(KVM_MEM_READONLY) : 0) | (logDirty ? CKVM_MEM_LOG_DIRTY_PAGES : 0),
            guest_phys_addr: slot.guestAddress,
            memory_size: slot.size,
            userspace_addr: UInt64(UInt(bitPattern: slot.host)))
        try ioctlChecked(fd, CKVM_SET_USER_MEMORY_REGION, &region, "KVM_SET_USER_MEMORY_REGION slot \(slot.number)")
    }

    /// KVM_ENABLE_CAP on the VM with one argument.
    func enableCapability(_ capability: Int32, _ argument: UInt64) throws(SystemError) {
        guard ckvm_enable_cap(fd, UInt32(capability), argument) == 0 else {
            throw SystemError("KVM_ENABLE_CAP \(capability)", errno: errno)
        }
    }

    /// Copies slot `slot`'s dirty bitmap (one bit per 4 KiB page) into `bitmap`.
    func getDirtyLog(slot: UInt32, into bitmap: UnsafeMutablePointer<UInt64>) throws(SystemError) {
        guard ckvm_get_dirty_log(fd, slot, bitmap) == 0 else { throw SystemError("KVM_GET_DIRTY_LOG slot \(slot)", errno: errno) }
    }

    /// Clears the dirty bits `bitmap` holds for pages `firstPage`... of slot `slot` and
    /// write-protects those pages again (MANUAL_DIRTY_LOG_PROTECT2). `firstPage` must be a
    /// multiple of 64, and `pageCount` too unless it reaches the slot's end.
    func clearDirtyLog(slot: UInt32, firstPage: UInt64, pageCount: UInt32, bitmap: UnsafeMutablePointer<UInt64>) throws(SystemError) {
        guard ckvm_clear_dirty_log(fd, slot, firstPage, pageCount, bitmap) == 0 else {
            throw SystemError("KVM_CLEAR_DIRTY_LOG slot \(slot) pages \(firstPage)+\(pageCount)", errno: errno)
        }
    }

    /// Real-mode support pages KVM needs on Intel; placed just below the firmware area, as QEMU does.
    func setRealModeSupportPages(identityMap: UInt64, tss: UInt64) throws(SystemError) {
        var address = identityMap
        try ioctlChecked(fd, CKVM_SET_IDENTITY_MAP_ADDR, &address, "KVM_SET_IDENTITY_MAP_ADDR")
        try ioctlChecked(fd, CKVM_SET_TSS_ADDR, value: Int(tss), "KVM_SET_TSS_ADDR")
    }

    /// Creates the in-kernel PIC pair + IOAPIC (and per-vCPU LAPICs) and the i8254 PIT.
    func createIrqchipAndPit() throws(SystemError) {
        try ioctlChecked(fd, CKVM_CREATE_IRQCHIP, value: 0, "KVM_CREATE_IRQCHIP")
        var pit = kvm_pit_config()
        try ioctlChecked(fd, CKVM_CREATE_PIT2, &pit, "KVM_CREATE_PIT2")
    }

    /// Drives an ISA interrupt line (PIC pin and IOAPIC pin `irq`) to `level`.
    func setIrqLine(_ irq: UInt32, level: Bool) throws(SystemError) {
        var line = kvm_irq_level()
        line.irq = irq
        line.level = level ? 1 : 0
        try ioctlChecked(fd, CKVM_IRQ_LINE, &line, "KVM_IRQ_LINE \(irq)")
    }

    /// Replaces the VM's whole GSI routing table (KVM_SET_GSI_ROUTING).
    func setGSIRouting(_ entries: [kvm_irq_routing_entry]) throws(SystemError) {
        let result = entries.withUnsafeBufferPointer { ckvm_set_gsi_routing(fd, $0.baseAddress, UInt32($0.count)) }
        guard result == 0 else { throw SystemError("KVM_SET_GSI_ROUTING (\(entries.count) routes)", errno: errno) }
    }

    /// Makes a write to `eventFD` raise GSI `gsi` inside KVM (an irqfd); `assign: false` removes it.
    func setIrqFD(_ eventFD: Int32, gsi: UInt32, assign: Bool) throws(SystemError) {
        var request = kvm_irqfd()
        request.fd = UInt32(bitPattern: eventFD)
        request.gsi = gsi
        request.flags = assign ? 0 : CKVM_IRQFD_FLAG_DEASSIGN
        try ioctlChecked(fd, CKVM_IRQFD, &request, "KVM_IRQFD gsi \(gsi)")
    }

    /// Makes a guest write of any size to the MMIO address `address` signal `eventFD` inside
    /// KVM, with no exit to the VMM (a virtqueue doorbell); `assign: false` removes it.
    func setIoEventFD(address: UInt64, eventFD: Int32, assign: Bool) throws(SystemError) {
        var request = kvm_ioeventfd()
        request.addr = address
        request.len = 0  // any access size (KVM_CAP_IOEVENTFD_ANY_LENGTH)
        request.fd = eventFD
        request.flags = assign ? 0 : CKVM_IOEVENTFD_FLAG_DEASSIGN
        try ioctlChecked(fd, CKVM_IOEVENTFD, &request, "KVM_IOEVENTFD at 0x\(String(address, radix: 16))")
    }

    func createVcpu(index: Int) throws(SystemError) -> VcpuFd {
        let vcpufd = try ioctlChecked(fd, CKVM_CREATE_VCPU, value: index, "KVM_CREATE_VCPU \(index)")
        do {
            return try VcpuFd(fd: vcpufd, index: index, mmapSize: kvm.vcpuMmapSize())
        } catch {
            close(vcpufd)
            throw error
        }
    }
}
