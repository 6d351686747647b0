import Shared

/// One device of the machine, with the five faces of DESIGN.md's "Devices": its bus mappings
/// (`attach`), its versioned state section, the fds it hands over, quiesce/resume, and what a
/// vCPU bridge may serve for it (`PortDevice.bridgeAccess`). The machine walks the devices
/// through `DeviceRegistry`; save, load, handover and the fd store never name a device.
protocol Device: AnyObject {
    /// Unique within the machine: QEMU's `id=`, or a fixed name for a board device ("com1").
    var id: String { get }
    /// What the machine description records: the kind and every option that shapes the
    /// device's state. A VM whose devices differ refuses the state, naming the difference.
    var topology: String { get }
    /// Maps the device's ports and MMIO ranges (on creation, in registry order).
    func attach(to buses: Buses) throws
    /// The state section this device writes, with its version; nil for a device with no state.
    var stateSection: (name: String, version: UInt32)? { get }
    /// Called only while the device is quiesced (and every vCPU paused).
    func saveState() throws -> [UInt8]
    /// Called on a VM created for incoming state, before its vCPUs first run.
    func loadState(_ section: StateSection) throws
    /// Fds the next image takes over in a live update, by handover name (unique, no ':').
    var handoverFDs: [(name: String, fd: Int32)] { get }
    /// The subset kept in systemd's fd store while the VM runs, for crash recovery.
    var storedFDs: [(name: String, fd: Int32)] { get }
    /// Stops what would change the device's state behind a save (device threads, in-flight
    /// I/O), leaving the guest's pending work where the saved state records it.
    func quiesce()
    /// Undoes `quiesce`: after a failed or rolled-back update, and on a new image after load.
    func resume()
}

extension Device {
    func attach(to buses: Buses) throws {}
    var stateSection: (name: String, version: UInt32)? { nil }
    func saveState() throws -> [UInt8] { [] }
    func loadState(_ section: StateSection) throws {
        throw StateFormatError.malformed("section '\(section.name)': device \(id) keeps no state")
    }
    var handoverFDs: [(name: String, fd: Int32)] { [] }
    var storedFDs: [(name: String, fd: Int32)] { [] }
    func quiesce() {}
    func resume() {}
}

/// The address spaces a device maps itself into.
struct Buses {
    let ports: IoBus
    let mmio: MmioBus
}
