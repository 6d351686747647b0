/// The machine's virtio-net NICs: created on the PCI bus with their taps (opened, passed in
/// with `fd=`, or handed over by the previous image), wired to KVM like the disks.
extension Machine {
    var nics: [VirtioNetDevice] { devices.devices.compactMap { $0 as? VirtioNetDevice } }

    func createNICs(on bus: PciBus) throws {
        for nic in config.nics {
            let device = try VirtioNetDevice(
                nic, bus: bus, memory: memory.guest, inheritedTap: inheritedFD(VirtioNetDevice.handoverName(nic.netdev.id)))
            try connect(device.transport, bus: bus)
            try devices.add(device)
        }
    }
}
