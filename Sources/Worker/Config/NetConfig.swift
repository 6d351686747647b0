/// `-netdev tap,...`: the host end of a NIC, a TAP interface opened by name or passed in.
public struct NetdevConfig: Equatable, Sendable {
    public enum Source: Equatable, Sendable {
        /// `ifname=NAME`: cprvmm opens /dev/net/tun and attaches to (or creates) NAME; a
        /// cpr-reboot reopens it by that name.
        case name(String)
        /// `fd=N`: an fd the caller opened (as libvirt does), inherited by cprvmm.
        case fd(Int32)
    }

    public var id: String
    public var source: Source
    /// `vnet_hdr=on|off`: frames on the tap carry a virtio-net header (offloads need it).
    /// nil: on when the tap has it (a passed fd), on for a tap cprvmm opens.
    public var vnetHeader: Bool?

    public init(id: String, source: Source, vnetHeader: Bool? = nil) {
        self.id = id
        self.source = source
        self.vnetHeader = vnetHeader
    }
}

/// `-device virtio-net-pci,netdev=ID[,mac=MAC][,id=ID][,addr=SLOT]`.
public struct VirtioNetConfig: Equatable, Sendable {
    public var id: String
    public var netdev: NetdevConfig
    public var mac: [UInt8]
    /// Bus 0 slot; assigned after the disks' when not given.
    public var slot: UInt8
    /// `romfile=PATH`: a PCI option ROM in the expansion ROM BAR, which firmware runs (iPXE's
    /// virtio ROM from Debian's ipxe-qemu, as QEMU has it). None by default.
    public var romFile: String?

    public init(id: String, netdev: NetdevConfig, mac: [UInt8], slot: UInt8, romFile: String? = nil) {
        self.id = id
        self.netdev = netdev
        self.mac = mac
        self.slot = slot
        self.romFile = romFile
    }

    /// QEMU's default MACs: 52:54:00:12:34:56, then ...:57 and so on, one per NIC.
    public static func defaultMAC(_ index: Int) -> [UInt8] { [0x52, 0x54, 0x00, 0x12, 0x34, UInt8(truncatingIfNeeded: 0x56 + index)] }

    public static func describe(_ mac: [UInt8]) -> String {
        mac.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
    }
}
