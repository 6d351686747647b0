import CKVM
import CLinux
import Glibc

/// KVM's GSI routing table as cprvmm keeps it: the routes KVM sets up by default for the
/// in-kernel PIC and IOAPIC pins (GSI 0-23), then one MSI route per device interrupt vector
/// (GSI 24 on), each raised through an irqfd. A device thread interrupts the guest by writing
/// an eventfd, with no ioctl; the guest's MSI-X table decides the route's message. The table
/// is VM-wide, so it lives in the machine; vectors never go away while the VM exists.
final class MsiRoutes {
    static let firstGSI: UInt32 = 24
    /// KVM's own limit here is 4096 routes (docs/platform.md); far more than two devices need.
    static let maxVectors = 1024

    private let vm: VmFd
    private let lock = Lock()
    private var messages: [(address: UInt64, data: UInt32)] = []

    init(vm: VmFd) { self.vm = vm }

    /// A new vector: returns the eventfd that raises it. Its message starts empty (nothing is
    /// delivered until the guest programs one and the device writes the eventfd).
    func addVector() throws -> Int32 {
        let eventFD = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard eventFD >= 0 else { throw SystemError("eventfd for an MSI vector", errno: errno) }
        do {
            try lock.withLock { () throws -> Void in
                guard messages.count < MsiRoutes.maxVectors else {
                    throw ConfigurationError("more than \(MsiRoutes.maxVectors) MSI vectors")
                }
                messages.append((0, 0))
                try commit()
                try vm.setIrqFD(eventFD, gsi: MsiRoutes.firstGSI + UInt32(messages.count - 1), assign: true)
            }
        } catch {
            close(eventFD)
            throw error
        }
        return eventFD
    }

    /// How many vectors were added; `setMessage` takes a vector's index in that order.
    var count: Int { lock.withLock { messages.count } }

    /// Points vector `index`'s route at the message the guest programmed.
    func setMessage(_ index: Int, address: UInt64, data: UInt32) throws {
        try lock.withLock {
            guard messages.indices.contains(index), messages[index] != (address, data) else { return }
            messages[index] = (address, data)
            try commit()
        }
    }

    /// The whole table: KVM's defaults (kvm_setup_default_irq_routing), then the MSI routes.
    private func commit() throws(SystemError) {
        var entries: [kvm_irq_routing_entry] = []
        func irqchip(_ gsi: UInt32, _ chip: UInt32, _ pin: UInt32) {
            var entry = kvm_irq_routing_entry()
            entry.gsi = gsi
            entry.type = CKVM_IRQ_ROUTING_IRQCHIP
            entry.u.irqchip.irqchip = chip
            entry.u.irqchip.pin = pin
            entries.append(entry)
        }
        for gsi in UInt32(0)..<16 { irqchip(gsi, gsi < 8 ? CKVM_IRQCHIP_PIC_MASTER : CKVM_IRQCHIP_PIC_SLAVE, gsi % 8) }
        for gsi in UInt32(0)..<24 { irqchip(gsi, CKVM_IRQCHIP_IOAPIC, gsi) }
        for (index, message) in messages.enumerated() {
            var entry = kvm_irq_routing_entry()
            entry.gsi = MsiRoutes.firstGSI + UInt32(index)
            entry.type = CKVM_IRQ_ROUTING_MSI
            entry.u.msi.address_lo = UInt32(truncatingIfNeeded: message.address)
            entry.u.msi.address_hi = UInt32(truncatingIfNeeded: message.address >> 32)
            entry.u.msi.data = message.data
            entries.append(entry)
        }
        try vm.setGSIRouting(entries)
    }
}
