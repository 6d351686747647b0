/// How a drive's image is cached on the host (QEMU's `cache=`).
public enum CacheMode: String, Equatable, Sendable {
    /// The host page cache holds writes until the guest flushes (QEMU's default).
    case writeback
    /// O_DIRECT: the host page cache is bypassed.
    case none
}

/// A raw image file (`-drive file=...` or `-blockdev driver=file`).
public struct DriveConfig: Equatable, Sendable {
    public var id: String
    public var path: String
    public var readOnly = false
    public var cache: CacheMode = .writeback
    /// No `format=` was given: the image is raw, unless it starts like a qcow2 image.
    public var formatProbed = false

    public init(id: String, path: String) {
        self.id = id
        self.path = path
    }
}

/// A virtio-blk-pci disk: its drive, PCI slot and place in the boot order.
public struct VirtioBlockConfig: Equatable, Sendable {
    public var id: String
    public var drive: DriveConfig
    /// Bus 0 slot (`addr=`); assigned from 2 upwards when not given.
    public var slot: UInt8
    public var bootIndex: Int?

    public init(id: String, drive: DriveConfig, slot: UInt8, bootIndex: Int? = nil) {
        self.id = id
        self.drive = drive
        self.slot = slot
        self.bootIndex = bootIndex
    }
}
