import Shared

/// The machine's devices in creation order, and everything done to all of them at once.
final class DeviceRegistry {
    let buses: Buses
    private(set) var devices: [Device] = []

    init(buses: Buses) { self.buses = buses }

    /// Adds `device` and maps it; a duplicate id or a state section another device already
    /// writes is a configuration error, as is an overlapping mapping.
    func add(_ device: Device) throws {
        if devices.contains(where: { $0.id == device.id }) {
            throw ConfigurationError("duplicate device id '\(device.id)'")
        }
        if let section = device.stateSection?.name,
           let other = devices.first(where: { $0.stateSection?.name == section }) {
            throw ConfigurationError("devices \(other.id) and \(device.id) would both save section '\(section)'")
        }
        try device.attach(to: buses)
        devices.append(device)
    }

    /// The topology the machine description records, one line per device.
    var topology: [String] { devices.map { "\($0.id): \($0.topology)" } }

    func save(to writer: StateWriter) throws {
        for device in devices {
            guard let section = device.stateSection else { continue }
            try writer.writeSection(section.name, version: section.version, payload: try device.saveState())
        }
    }

    /// The device that reads section `name`, if any.
    func device(forSection name: String) -> Device? {
        devices.first { $0.stateSection?.name == name }
    }

    /// Hands `section` to its device after checking the version.
    func load(_ section: StateSection) throws {
        guard let device = device(forSection: section.name), let expected = device.stateSection else {
            throw StateFormatError.malformed("unknown section '\(section.name)'")
        }
        guard section.version == expected.version else {
            throw StateFormatError.malformed("section '\(section.name)' has version \(section.version); this cprvmm reads version \(expected.version)")
        }
        try device.loadState(section)
    }

    var handoverFDs: [(name: String, fd: Int32)] { devices.flatMap(\.handoverFDs) }
    var storedFDs: [(name: String, fd: Int32)] { devices.flatMap(\.storedFDs) }

    func quiesce() { for device in devices { device.quiesce() } }
    func resume() { for device in devices { device.resume() } }
}
