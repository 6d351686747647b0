import Shared

/// `query-pci` and `query-block`, in QEMU's shapes (qapi/pci.json, qapi/block-core.json).
extension QMPCommands {
    static let devices: [QMPCommand] = [
        QMPCommand(name: "query-pci", parameters: []) { machine, _ in
            .array([.object(["bus": 0, "devices": .array(pciDevices(machine))])])
        },
        QMPCommand(name: "query-block", parameters: []) { machine, _ in
            .array(machine.disks.map(blockInfo))
        },
    ]

    static func pciDevices(_ machine: Machine) -> [JSONValue] {
        guard let bus = machine.pciBus else { return [] }
        return bus.allFunctions.map { devfn, function in
            let config = bus.withConfig(function) { $0 }
            let classCode = config.read(0x0A, size: 2)
            var device: JSONObject = [
                "bus": 0, "slot": .int(Int64(devfn >> 3)), "function": .int(Int64(devfn & 7)),
                "class_info": .object(["class": .int(Int64(classCode)), "desc": .string(PciClass.describe(classCode))]),
                "id": .object([
                    "vendor": .int(Int64(config.vendorID)), "device": .int(Int64(config.deviceID)),
                    "subsystem-vendor": .int(Int64(config.read(0x2C, size: 2))), "subsystem": .int(Int64(config.read(0x2E, size: 2))),
                ]),
                "qdev_id": .string(function.qdevID),
            ]
            if config.interruptPin != 0 {
                device["irq_pin"] = .int(Int64(config.interruptPin))
                device["irq"] = .int(Int64(config.read(PciConfigSpace.interruptLineOffset, size: 1)))
            }
            device["regions"] = .array((0..<6).compactMap { index -> JSONValue? in
                guard let bar = config.bars[index] else { return nil }
                let flags = config.read(PciConfigSpace.barOffset + 4 * index, size: 1)
                // Where it decodes now; -1 while unmapped or disabled, as QEMU reports it.
                let address = config.barAddress(index).map { Int64(bitPattern: $0) } ?? -1
                var region: JSONObject = ["bar": .int(Int64(index)), "size": .int(Int64(bar.size)), "address": .int(address)]
                if bar.kind == .io {
                    region["type"] = "io"
                } else {
                    region["type"] = "memory"
                    region["prefetch"] = .bool(flags & 0x8 != 0)
                    region["mem_type_64"] = .bool(bar.kind == .memory64)
                }
                return .object(region)
            })
            return .object(device)
        }
    }

    static func blockInfo(_ disk: VirtioBlockDevice) -> JSONValue {
        let drive = disk.config.drive
        let stats = disk.block.statistics
        return .object([
            "device": .string(drive.id),
            "qdev": .string("/machine/peripheral/\(disk.config.id)/virtio-backend"),
            "locked": false, "removable": false, "type": "unknown", "io-status": "ok",
            "inserted": .object([
                "file": .string(drive.path), "node-name": .string(drive.id), "ro": .bool(drive.readOnly), "drv": "raw",
                "encrypted": false, "backing_file_depth": 0,
                "cache": .object(["writeback": true, "direct": .bool(drive.cache == .none), "no-flush": false]),
                "image": .object(["filename": .string(drive.path), "format": "raw", "virtual-size": .int(Int64(disk.image.size))]),
            ]),
            // cprvmm's own: what the device served (QEMU keeps these in query-blockstats).
            "x-stats": .object([
                "rd_operations": .int(Int64(stats.reads)), "wr_operations": .int(Int64(stats.writes)),
                "flush_operations": .int(Int64(stats.flushes)), "failed_operations": .int(Int64(stats.failures)),
            ]),
        ])
    }
}

/// The names QEMU's `info pci` gives PCI classes (the ones cprvmm's devices use).
enum PciClass {
    static func describe(_ classCode: UInt32) -> String {
        switch classCode {
        case 0x0100: return "SCSI controller"
        case 0x0600: return "Host bridge"
        case 0x0601: return "ISA bridge"
        case 0x0200: return "Ethernet controller"
        default: return "Class \(hex4(classCode))"
        }
    }

    /// Four hex digits, as `info pci` prints ids.
    static func hex4(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
