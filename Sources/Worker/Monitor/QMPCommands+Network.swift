import Shared

/// QEMU's `set_link`, and cprvmm's `x-query-nics` (what `info network` and `cprctl status`
/// show of each NIC: model, MAC, backend, link, counters).
extension QMPCommands {
    static let network: [QMPCommand] = [
        // QEMU takes the NIC's id or its netdev's; either end sets the link of both.
        QMPCommand(name: "set_link", parameters: [.required("name", .string), .required("up", .bool)]) { machine, arguments in
            let name = arguments["name"]?.stringValue ?? ""
            guard let nic = machine.nics.first(where: { $0.id == name || $0.config.netdev.id == name }) else {
                throw QMPError(.deviceNotFound, "Device '\(name)' not found")
            }
            let up = arguments["up"]?.boolValue ?? true
            nic.net.setLink(up: up)
            Log.info("\(nic.net.name): link \(up ? "up" : "down") (set_link)")
            return .object([:])
        },
        QMPCommand(name: "x-query-nics", parameters: []) { machine, _ in
            .array(machine.nics.map(nicInfo))
        },
    ]

    static func nicInfo(_ nic: VirtioNetDevice) -> JSONValue {
        let stats = nic.net.statistics
        let (mac, up) = nic.net.lock.withLock { (nic.net.filter.mac, nic.net.linkUp) }
        var backend: JSONObject = ["type": "tap", "id": .string(nic.config.netdev.id), "ifname": .string(nic.tap.interfaceName),
                                   "vnet-hdr": .bool(nic.tap.vnetHeader)]
        if case .fd(let fd) = nic.config.netdev.source { backend["fd"] = .int(Int64(fd)) }
        return .object([
            "id": .string(nic.config.id), "model": "virtio-net-pci", "mac": .string(VirtioNetConfig.describe(mac)),
            "link-up": .bool(up), "slot": .int(Int64(nic.config.slot)), "backend": .object(backend),
            "rx-packets": .int(Int64(stats.rxPackets)), "rx-bytes": .int(Int64(stats.rxBytes)), "rx-dropped": .int(Int64(stats.rxDropped)),
            "tx-packets": .int(Int64(stats.txPackets)), "tx-bytes": .int(Int64(stats.txBytes)), "tx-dropped": .int(Int64(stats.txDropped)),
        ])
    }
}
