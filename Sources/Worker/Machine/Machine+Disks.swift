/// The machine's virtio-blk disks: created on the PCI bus, wired to KVM for doorbells
/// (ioeventfd) and interrupts (irqfd + MSI routes, INTx); `connect` serves the NICs too.
extension Machine {
    var disks: [VirtioBlockDevice] { devices.devices.compactMap { $0 as? VirtioBlockDevice } }

    func createDisks(on bus: PciBus) throws {
        for disk in config.disks {
            let device = try VirtioBlockDevice(
                disk, slot: disk.slot, bus: bus, memory: memory.guest,
                inheritedImage: inheritedFD(VirtioBlockDevice.handoverName(disk.id)))
            try connect(device.transport, bus: bus)
            try devices.add(device)
        }
    }

    /// Wires a virtio-pci function to KVM: an irqfd and MSI route per MSI-X vector, INTx
    /// through the PCI bus, and the queues' doorbells as ioeventfds.
    func connect(_ transport: VirtioPciTransport, bus: PciBus) throws {
        let log = RateLimiter()
        for _ in 0..<transport.msix.vectors { transport.msiEventFDs.append(try msiRoutes.addVector()) }
        let firstVector = msiRoutes.count - transport.msix.vectors
        transport.setMSIMessage = { [unowned self] vector, address, data in
            do {
                try msiRoutes.setMessage(firstVector + vector, address: address, data: data)
            } catch {
                log.log("\(transport.pciName): MSI-X vector \(vector): \(error)")
            }
        }
        transport.setIntx = { [unowned bus, unowned transport] level in bus.setIntx(transport, level: level) }
        transport.setNotifyEventFD = { [unowned self] address, fd, assign in
            do {
                try vm.setIoEventFD(address: address, eventFD: fd, assign: assign)
            } catch {
                // Kicks still arrive as MMIO exits; only slower.
                log.log("\(transport.pciName): doorbell at 0x\(String(address, radix: 16)) stays an exit: \(error)")
            }
        }
    }

    /// QEMU's OpenFirmware paths for fw_cfg's `bootorder`, by bootindex (SeaBIOS matches
    /// `/pci@i0cf8/*@SLOT` against them); empty when no disk has a bootindex.
    static func bootOrder(_ disks: [VirtioBlockConfig]) -> [String] {
        disks.filter { $0.bootIndex != nil }.sorted { $0.bootIndex! < $1.bootIndex! }
            .map { "/pci@i0cf8/scsi@\(String($0.slot, radix: 16))/disk@0,0" }
    }
}
