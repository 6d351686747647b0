import Shared

/// `info pci` and `info block`, in QEMU's layout, from the QMP replies.
extension HumanMonitor {
    static func describePCI(_ devices: [JSONValue]) -> String {
        var text = ""
        for case .object(let device) in devices {
            let id = device["id"]?.objectValue ?? [:]
            func hex4(_ key: String) -> String { PciClass.hex4(UInt32(id[key]?.intValue ?? 0)) }
            text += "  Bus  0, device \(pad(device["slot"]?.intValue ?? 0, 3)), function \(device["function"]?.intValue ?? 0):\n"
            text += "    \(device["class_info"]?["desc"]?.stringValue ?? "Device"): PCI device \(hex4("vendor")):\(hex4("device"))\n"
            text += "      PCI subsystem \(hex4("subsystem-vendor")):\(hex4("subsystem"))\n"
            if let pin = device["irq_pin"]?.intValue, pin > 0, let irq = device["irq"]?.intValue {
                text += "      IRQ \(irq), pin \(Character(UnicodeScalar(UInt8(64 + pin))))\n"
            }
            for case .object(let region) in device["regions"]?.arrayValue ?? [] {
                let bar = region["bar"]?.intValue ?? 0
                let address = UInt64(bitPattern: region["address"]?.intValue ?? 0)
                let size = UInt64(region["size"]?.intValue ?? 0)
                let range = "0x\(String(address, radix: 16)) [0x\(String(address &+ size &- 1, radix: 16))]"
                if region["type"]?.stringValue == "io" {
                    text += "      BAR\(bar): I/O at \(range).\n"
                } else {
                    let width = region["mem_type_64"]?.boolValue == true ? "64 bit" : "32 bit"
                    let prefetch = region["prefetch"]?.boolValue == true ? " prefetchable" : ""
                    text += "      BAR\(bar): \(width)\(prefetch) memory at \(range).\n"
                }
            }
            text += "      id \"\(device["qdev_id"]?.stringValue ?? "")\"\n"
        }
        return text
    }

    static func describeBlock(_ disks: [JSONValue]) -> String {
        var text = ""
        for case .object(let disk) in disks {
            let inserted = disk["inserted"]?.objectValue ?? [:]
            let readOnly = inserted["ro"]?.boolValue == true ? ", read-only" : ""
            text += "\(disk["device"]?.stringValue ?? ""): \(inserted["file"]?.stringValue ?? "") (raw\(readOnly))\n"
            text += "    Attached to:      \(disk["qdev"]?.stringValue ?? "")\n"
            let direct = inserted["cache"]?["direct"]?.boolValue == true
            text += "    Cache mode:       writeback\(direct ? ", direct" : "")\n"
        }
        return text
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }
}

extension HumanMonitor {
    /// QEMU's `info network` layout: the NIC, then its backend indented under it.
    static func describeNetwork(_ nics: [JSONValue]) -> String {
        nics.map { nic in
            let backend = nic["backend"]
            let link = nic["link-up"]?.boolValue == false ? " (link down)" : ""
            var text = "\(nic["id"]?.stringValue ?? "?"): index=0,type=nic,model=virtio-net-pci,macaddr=\(nic["mac"]?.stringValue ?? "?")\(link)\n"
            text += " \\ \(backend?["id"]?.stringValue ?? "?"): index=0,type=tap,ifname=\(backend?["ifname"]?.stringValue ?? "?"),vnet_hdr=\(backend?["vnet-hdr"]?.boolValue == true ? "on" : "off")\n"
            text += "   rx \(nic["rx-packets"]?.intValue ?? 0) packets (\(nic["rx-dropped"]?.intValue ?? 0) dropped), tx \(nic["tx-packets"]?.intValue ?? 0) packets (\(nic["tx-dropped"]?.intValue ?? 0) dropped)\n"
            return text
        }.joined()
    }
}
