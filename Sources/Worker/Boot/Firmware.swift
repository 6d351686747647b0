/// A raw firmware image for `-bios`, mapped just below 4 GiB as on a PC.
struct Firmware {
    static let maxSize = 16 << 20
    let bytes: [UInt8]

    /// QEMU's rules: a non-empty whole number of 64 KiB blocks, and it must fit below the
    /// real-mode support pages at 0xFEFFC000.
    static func load(path: String) throws -> Firmware {
        let bytes = try readWholeFile(path, limit: maxSize, option: "-bios")
        guard !bytes.isEmpty, bytes.count % 0x10000 == 0 else {
            throw ConfigurationError("-bios \(path): size \(bytes.count) is not a non-zero multiple of 64 KiB (pad the image)")
        }
        return Firmware(bytes: bytes)
    }
}
