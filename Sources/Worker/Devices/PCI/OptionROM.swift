import Glibc
import Shared

/// A PCI option ROM (`romfile=`): the image firmware copies out of the expansion ROM BAR and
/// runs, such as iPXE's virtio-net ROM. Read once from its file; reads past the image return
/// 0xff like an empty ROM, writes are ignored. A live update reads the file again, and the
/// device topology carries its size and CRC, so a ROM that changed meanwhile is refused by name
/// rather than swapped under a guest that may have copied it.
final class OptionROM: MmioDevice {
    static let maxSize = 1 << 20

    let path: String
    let bytes: [UInt8]

    init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ConfigurationError("romfile=\(path): \(SystemError.describe(errno))") }
        defer { close(fd) }
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buffer, buffer.count)
            guard n >= 0 else { throw ConfigurationError("romfile=\(path): \(SystemError.describe(errno))") }
            if n == 0 { break }
            data += buffer[..<n]
            guard data.count <= OptionROM.maxSize else { throw ConfigurationError("romfile=\(path): larger than 1 MiB, not an option ROM") }
        }
        guard data.count >= 512, data[0] == 0x55, data[1] == 0xAA else {
            throw ConfigurationError("romfile=\(path): not a PCI option ROM (it does not start with 55 aa); use romfile= for none")
        }
        bytes = data
    }

    /// The BAR's size: the image rounded up to a power of two, at least 2 KiB.
    var barSize: UInt64 {
        var size: UInt64 = 2048
        while size < UInt64(bytes.count) { size <<= 1 }
        return size
    }

    /// For the device topology: a different ROM is a different device.
    var identity: String { "\(bytes.count):\(String(CRC32.checksum(bytes), radix: 16))" }

    func mmioRead(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        for i in 0..<data.count {
            let at = Int(offset) + i
            data[i] = at < bytes.count ? bytes[at] : 0xFF
        }
    }

    func mmioWrite(offset: UInt64, from data: UnsafeRawBufferPointer) {}
}
