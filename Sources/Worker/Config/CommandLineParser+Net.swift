// -netdev tap, -device virtio-net-pci and -nic tap, as QEMU spells them. As with disks, the
// host ends (-netdev) are collected first and bound to devices once every option is known.

extension CommandLineParser.ParseState {
    /// A `-device virtio-net-pci` waiting for its netdev.
    struct NicDevice {
        var id: String?
        var netdev: String
        var mac: [UInt8]?
        var slot: UInt8?
        var romFile: String?
        var context: String
    }

    /// `-netdev tap,id=ID[,ifname=NAME | fd=N][,script=no][,downscript=no][,vnet_hdr=on|off][,queues=1][,vhost=off]`
    mutating func addNetdev(_ value: String, context: String) throws(CommandLineError) {
        let list = try options(value, impliedKey: "type", keys: ["type", "id", "ifname", "fd", "script", "downscript", "vnet_hdr", "queues", "vhost", "sndbuf"], context: context)
        let netdev = try netdevConfig(list, context: context)
        try defineNetdev(netdev, context: context)
    }

    /// `-nic tap,...[,model=virtio-net-pci][,mac=MAC]`: a -netdev and its device in one option.
    mutating func addNic(_ value: String, context: String) throws(CommandLineError) {
        let list = try options(value, impliedKey: "type", keys: ["type", "id", "ifname", "fd", "script", "downscript", "vnet_hdr", "queues", "vhost", "sndbuf", "model", "mac"], context: context)
        if let model = list["model"], model != "virtio-net-pci", model != "virtio" {
            throw CommandLineError("\(context): model=\(model) is not supported (cprvmm's NICs are virtio-net-pci)")
        }
        var named = list
        if named["id"] == nil { named.items.append(OptionList.Item(key: "id", value: "nic\(nicDevices.count)")) }
        let netdev = try netdevConfig(named, context: context)
        try defineNetdev(netdev, context: context)
        var mac: [UInt8]?
        if let text = list["mac"] { mac = try macAddress(text, context: context) }
        nicDevices.append(NicDevice(id: netdev.id, netdev: netdev.id, mac: mac, context: context))
    }

    /// `-device virtio-net-pci,netdev=ID[,mac=MAC][,id=ID][,addr=SLOT][,romfile=PATH]`
    mutating func addVirtioNetDevice(_ value: String, context: String) throws(CommandLineError) {
        let list = try options(value, impliedKey: "driver", keys: ["driver", "netdev", "mac", "id", "addr", "romfile", "mq", "bootindex"], context: context)
        guard let netdev = list["netdev"] else { throw CommandLineError("\(context): missing netdev=ID (define it with -netdev tap,id=ID,...)") }
        if let mq = list["mq"], try boolean(mq, key: "mq", context: context) {
            throw CommandLineError("\(context): mq=on is not supported by this cprvmm version (one queue pair per NIC)")
        }
        if list["bootindex"] != nil {
            throw CommandLineError("\(context): bootindex= is not supported on a NIC (cprvmm has no network boot firmware)")
        }
        var device = NicDevice(netdev: netdev, context: context)
        if let rom = list["romfile"], !rom.isEmpty { device.romFile = rom }
        if let id = list["id"] {
            try checkID(id, context: context)
            device.id = id
        }
        if let text = list["mac"] { device.mac = try macAddress(text, context: context) }
        if let text = list["addr"] { device.slot = try pciSlot(text, context: context) }
        nicDevices.append(device)
    }

    /// Binds each NIC to its netdev and gives it a slot after the disks'; called by `finish`.
    mutating func bindNICs() throws(CommandLineError) {
        var used: [String: String] = [:]
        var taken = Set(config.disks.map(\.slot))
        var nextSlot: UInt8 = 2
        for (index, device) in nicDevices.enumerated() {
            guard let netdev = netdevs[device.netdev]?.netdev else {
                throw CommandLineError("\(device.context): no netdev with id '\(device.netdev)' (define it with -netdev tap,id=\(device.netdev),...)")
            }
            if let other = used[device.netdev] {
                throw CommandLineError("\(device.context): netdev '\(device.netdev)' is already used by \(other)")
            }
            used[device.netdev] = device.context
            let slot: UInt8
            if let explicit = device.slot {
                guard !taken.contains(explicit) else { throw CommandLineError("\(device.context): PCI slot \(explicit) is already taken") }
                slot = explicit
            } else {
                while taken.contains(nextSlot) || nicDevices.contains(where: { $0.slot == nextSlot }) { nextSlot += 1 }
                guard nextSlot < 32 else { throw CommandLineError("\(device.context): no free PCI slot is left on bus 0") }
                slot = nextSlot
            }
            taken.insert(slot)
            let id = device.id ?? device.netdev
            if config.disks.contains(where: { $0.id == id }) || config.nics.contains(where: { $0.id == id }) {
                throw CommandLineError("\(device.context): device id '\(id)' is already used")
            }
            config.nics.append(VirtioNetConfig(id: id, netdev: netdev, mac: device.mac ?? VirtioNetConfig.defaultMAC(index), slot: slot, romFile: device.romFile))
        }
        for (id, entry) in netdevs where used[id] == nil {
            throw CommandLineError("\(entry.context): defined but not used (add -device virtio-net-pci,netdev=\(id))")
        }
    }

    private func netdevConfig(_ list: OptionList, context: String) throws(CommandLineError) -> NetdevConfig {
        switch list["type"] {
        case "tap": break
        case nil: throw CommandLineError("\(context): missing the backend type (use tap)")
        case let other?:
            throw CommandLineError("\(context): netdev type '\(other)' is not supported by this cprvmm version (tap only: a TAP interface the host bridges or routes)")
        }
        guard let id = list["id"] else { throw CommandLineError("\(context): missing id=") }
        try checkID(id, context: context)
        for key in ["script", "downscript"] {
            if let script = list[key], script != "no", !script.isEmpty {
                throw CommandLineError("\(context): \(key)=\(script) is not supported: cprvmm runs no scripts (set the tap up beforehand, then use \(key)=no)")
            }
        }
        if let vhost = list["vhost"], try boolean(vhost, key: "vhost", context: context) {
            throw CommandLineError("\(context): vhost=on is not supported: cprvmm serves the rings itself (its device thread), so that they cross live updates with nothing lost; use vhost=off")
        }
        if let queues = list["queues"], queues != "1" {
            throw CommandLineError("\(context): queues=\(queues) is not supported by this cprvmm version (one queue pair per NIC: queues=1)")
        }
        let source: NetdevConfig.Source
        switch (list["ifname"], list["fd"]) {
        case (let name?, nil):
            guard name.utf8.count < 16, !name.contains("/"), !name.contains(" ") else {
                throw CommandLineError("\(context): invalid ifname '\(name)' (an interface name of at most 15 characters)")
            }
            source = .name(name)
        case (nil, let text?):
            guard let fd = Int32(text), fd > 2 else { throw CommandLineError("\(context): invalid fd '\(text)' (the number of an open tap fd, above 2)") }
            source = .fd(fd)
        case (nil, nil):
            source = .name("")
        case (_?, _?):
            throw CommandLineError("\(context): ifname= and fd= exclude each other (fd= is a tap opened by the caller)")
        }
        var vnet: Bool?
        if let text = list["vnet_hdr"] { vnet = try boolean(text, key: "vnet_hdr", context: context) }
        return NetdevConfig(id: id, source: source, vnetHeader: vnet)
    }

    private mutating func defineNetdev(_ netdev: NetdevConfig, context: String) throws(CommandLineError) {
        if let other = netdevs[netdev.id] {
            throw CommandLineError("\(context): netdev id '\(netdev.id)' is already used by \(other.context)")
        }
        netdevs[netdev.id] = (netdev, context)
    }

    /// A unicast MAC address, six hex bytes with ':' or '-'.
    func macAddress(_ text: String, context: String) throws(CommandLineError) -> [UInt8] {
        let parts = text.split(separator: text.contains("-") ? "-" : ":", omittingEmptySubsequences: false)
        let bytes = parts.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
        guard parts.count == 6, bytes.count == 6 else {
            throw CommandLineError("\(context): invalid mac '\(text)' (six hex bytes, as in 52:54:00:12:34:56)")
        }
        guard bytes[0] & 1 == 0 else { throw CommandLineError("\(context): mac \(text) is a multicast address (the first byte must be even)") }
        return bytes
    }
}
