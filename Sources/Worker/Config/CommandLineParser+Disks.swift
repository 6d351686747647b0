// -drive, -blockdev, -device virtio-blk-pci and -boot, as QEMU spells them. Drives are
// collected first and bound to devices once every option is known (QEMU creates -blockdev
// nodes before -device devices, whatever their order on the line).

extension CommandLineParser.ParseState {
    /// A `-device virtio-blk-pci` waiting for its drive.
    struct DiskDevice {
        var id: String?
        var drive: String
        var slot: UInt8?
        var bootIndex: Int?
        var context: String
    }

    /// `-drive file=PATH[,format=raw][,if=virtio|none][,readonly=on][,cache=none|writeback][,id=ID]`
    mutating func addDrive(_ value: String, context: String) throws(CommandLineError) {
        let list = try options(value, impliedKey: nil, keys: ["file", "format", "if", "readonly", "cache", "id", "media", "index"], context: context)
        guard let path = list["file"], !path.isEmpty else { throw CommandLineError("\(context): missing file=PATH") }
        if let media = list["media"], media != "disk" { throw CommandLineError("\(context): media=\(media) is not supported (cprvmm has disks only)") }
        if list["index"] != nil { throw CommandLineError("\(context): index= is not supported (give each drive an id= instead)") }
        let interface = list["if"]
        guard interface == "virtio" || interface == "none" else {
            let what = interface.map { "if=\($0)" } ?? "a -drive without if= (an IDE disk in QEMU)"
            throw CommandLineError("\(context): \(what) is not supported; cprvmm's disks are virtio (add if=virtio, or if=none with -device virtio-blk-pci,drive=ID)")
        }
        let id = list["id"] ?? "virtio\(drives.count)"
        try checkID(id, context: context)
        var drive = DriveConfig(id: id, path: path)
        try applyFormat(list["format"], to: &drive, context: context)
        if let readOnly = list["readonly"] { drive.readOnly = try boolean(readOnly, key: "readonly", context: context) }
        if let cache = list["cache"] { drive.cache = try cacheMode(cache, context: context) }
        try define(drive, context: context)
        if interface == "virtio" {
            diskDevices.append(DiskDevice(id: id, drive: id, context: context))
        }
    }

    /// `-blockdev driver=file,node-name=N,filename=PATH[,read-only=on][,cache.direct=on]`, and
    /// `driver=raw,node-name=M,file=N` over it (libvirt's two layers).
    mutating func addBlockdev(_ value: String, context: String) throws(CommandLineError) {
        let list = try options(
            value, impliedKey: nil, keys: ["driver", "node-name", "filename", "file", "read-only", "cache.direct", "cache.no-flush", "discard", "aio", "auto-read-only"],
            context: context)
        guard let name = list["node-name"] else { throw CommandLineError("\(context): missing node-name=") }
        try checkID(name, context: context)
        var drive: DriveConfig
        switch list["driver"] {
        case "file":
            guard let path = list["filename"], !path.isEmpty else { throw CommandLineError("\(context): missing filename=PATH") }
            drive = DriveConfig(id: name, path: path)
            if let direct = list["cache.direct"] { drive.cache = try boolean(direct, key: "cache.direct", context: context) ? .none : .writeback }
        case "raw":
            guard let file = list["file"], let lower = drives[file] else {
                throw CommandLineError("\(context): driver=raw needs file=NODE naming an earlier -blockdev driver=file")
            }
            drive = lower.drive
            drive.id = name
        case nil:
            throw CommandLineError("\(context): missing driver= (use driver=file)")
        case let other?:
            throw CommandLineError("\(context): driver=\(other) is not supported by this cprvmm version (raw images only: driver=file, optionally under driver=raw)")
        }
        if let readOnly = list["read-only"] { drive.readOnly = try boolean(readOnly, key: "read-only", context: context) }
        try define(drive, context: context)
    }

    /// `-device virtio-blk-pci,drive=N[,id=ID][,bootindex=K][,addr=S]`
    mutating func addVirtioBlockDevice(_ value: String, context: String) throws(CommandLineError) {
        let list = try options(value, impliedKey: "driver", keys: ["driver", "drive", "id", "bootindex", "addr", "serial"], context: context)
        guard let drive = list["drive"] else { throw CommandLineError("\(context): missing drive=ID") }
        var device = DiskDevice(drive: drive, context: context)
        if let id = list["id"] {
            try checkID(id, context: context)
            device.id = id
        }
        if let text = list["bootindex"] {
            guard let index = Int(text), index >= 0 else { throw CommandLineError("\(context): invalid bootindex '\(text)' (use a number from 0)") }
            device.bootIndex = index
        }
        if let text = list["addr"] { device.slot = try pciSlot(text, context: context) }
        diskDevices.append(device)
    }

    /// QEMU's `addr=SLOT[.FUNCTION]` on bus 0; only function 0.
    func pciSlot(_ text: String, context: String) throws(CommandLineError) -> UInt8 {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let slot = UInt8(parts[0].hasPrefix("0x") ? String(parts[0].dropFirst(2)) : String(parts[0]), radix: 16),
              (2...31).contains(slot), parts.count == 1 || parts[1] == "0" else {
            throw CommandLineError("\(context): invalid addr '\(text)' (use a slot from 0x2 to 0x1f; slots 0 and 1 hold the chipset)")
        }
        return slot
    }

    /// `-boot order=c[,menu=off][,strict=on|off]`: cprvmm boots from its disks only.
    mutating func setBoot(_ value: String, context: String) throws(CommandLineError) {
        let list = try options(value, impliedKey: "order", keys: ["order", "once", "menu", "strict", "reboot-timeout", "splash-time"], context: context)
        for key in ["once", "reboot-timeout", "splash-time"] where list[key] != nil {
            throw CommandLineError("\(context): \(key)= is not supported by this cprvmm version")
        }
        if let order = list["order"], order != "c" {
            throw CommandLineError("\(context): boot order '\(order)' is not supported (cprvmm boots from disks only: order=c)")
        }
        if let menu = list["menu"], try boolean(menu, key: "menu", context: context) {
            throw CommandLineError("\(context): menu=on is not supported (cprvmm has no display or keyboard for a boot menu)")
        }
    }

    private mutating func applyFormat(_ format: String?, to drive: inout DriveConfig, context: String) throws(CommandLineError) {
        switch format {
        case "raw": break
        case nil: drive.formatProbed = true
        case let other?:
            throw CommandLineError("\(context): format=\(other) is not supported by this cprvmm version (raw images only: convert with qemu-img convert -O raw)")
        }
    }

    private func cacheMode(_ text: String, context: String) throws(CommandLineError) -> CacheMode {
        guard let mode = CacheMode(rawValue: text) else {
            throw CommandLineError("\(context): cache=\(text) is not supported (use cache=none or cache=writeback)")
        }
        return mode
    }

    private mutating func define(_ drive: DriveConfig, context: String) throws(CommandLineError) {
        if let other = drives[drive.id] {
            throw CommandLineError("\(context): drive id '\(drive.id)' is already used by \(other.context)")
        }
        drives[drive.id] = (drive, context)
    }

    /// Binds each virtio-blk-pci to its drive and gives it a slot; called by `finish`.
    mutating func bindDisks() throws(CommandLineError) {
        var used: [String: String] = [:]
        var taken = Set(diskDevices.compactMap(\.slot)).union(nicDevices.compactMap(\.slot))
        var nextSlot: UInt8 = 2
        for device in diskDevices {
            guard let drive = drives[device.drive]?.drive else {
                throw CommandLineError("\(device.context): no drive with id '\(device.drive)' (define it with -blockdev node-name=\(device.drive),... or -drive if=none,id=\(device.drive),...)")
            }
            if let other = used[device.drive] {
                throw CommandLineError("\(device.context): drive '\(device.drive)' is already used by \(other)")
            }
            used[device.drive] = device.context
            let slot: UInt8
            if let explicit = device.slot {
                guard config.disks.allSatisfy({ $0.slot != explicit }) else {
                    throw CommandLineError("\(device.context): PCI slot \(explicit) is already taken")
                }
                slot = explicit
            } else {
                while taken.contains(nextSlot) { nextSlot += 1 }
                guard nextSlot < 32 else { throw CommandLineError("\(device.context): no free PCI slot is left on bus 0") }
                slot = nextSlot
                taken.insert(slot)
            }
            let id = device.id ?? device.drive
            if config.disks.contains(where: { $0.id == id }) {
                throw CommandLineError("\(device.context): device id '\(id)' is already used")
            }
            config.disks.append(VirtioBlockConfig(id: id, drive: drive, slot: slot, bootIndex: device.bootIndex))
        }
    }
}
