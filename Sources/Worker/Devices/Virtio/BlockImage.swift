import CLinux
import Glibc

/// A raw disk image file (QEMU's `format=raw` on the `file` driver): whole-file reads and
/// writes at byte offsets, a flush that is a real fdatasync. `cache=none` opens it O_DIRECT
/// (the host page cache is bypassed; a guest buffer that is not page-aligned goes through
/// an aligned bounce buffer), `cache=writeback` uses the page cache.
final class BlockImage {
    static let sectorSize: UInt64 = 512
    static let directAlignment = 4096

    let path: String
    let fd: Int32
    let readOnly: Bool
    let direct: Bool
    /// Bytes, rounded down to whole sectors (what the guest sees).
    let size: UInt64

    /// Opens `config`'s file, or takes over `inherited` (a live update's handover).
    init(_ config: DriveConfig, inherited: Int32?) throws {
        path = config.path
        readOnly = config.readOnly
        direct = config.cache == .none
        if let inherited {
            _ = fcntl(inherited, F_SETFD, FD_CLOEXEC)
            fd = inherited
        } else {
            var flags = (config.readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC
            if direct { flags |= CLINUX_O_DIRECT }
            let opened = open(config.path, flags)
            guard opened >= 0 else {
                let code = errno
                if code == EINVAL && direct {
                    throw ConfigurationError("-drive file=\(config.path): cache=none needs O_DIRECT, which this file system does not support (use cache=writeback)")
                }
                throw ConfigurationError("-drive file=\(config.path): \(SystemError.describe(code))")
            }
            fd = opened
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            if inherited == nil { close(fd) }
            throw ConfigurationError("-drive file=\(config.path): \(SystemError.describe(code))")
        }
        var bytes = UInt64(info.st_size)
        if info.st_mode & S_IFMT == S_IFBLK {
            var deviceBytes: UInt64 = 0
            if ioctl(fd, 0x8008_1272 /* BLKGETSIZE64 */, &deviceBytes) == 0 { bytes = deviceBytes }
        }
        size = bytes / BlockImage.sectorSize * BlockImage.sectorSize
        if config.formatProbed && inherited == nil && BlockImage.looksLikeQcow2(fd) {
            close(fd)
            throw ConfigurationError("-drive file=\(config.path): this is a qcow2 image, which cprvmm does not read (convert it with qemu-img convert -O raw, or say format=raw if it really is raw)")
        }
    }

    /// QEMU probes an image without `format=`; a qcow2 header served as a raw disk would hand
    /// the guest the image's metadata (and let it rewrite it).
    private static func looksLikeQcow2(_ fd: Int32) -> Bool {
        var magic = [UInt8](repeating: 0, count: 4)
        return pread(fd, &magic, 4, 0) == 4 && magic == [0x51, 0x46, 0x49, 0xFB]
    }

    deinit { close(fd) }

    /// Fills `buffer` from byte `offset`; false on an I/O error or a short file.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) -> Bool {
        if direct && !BlockImage.aligned(buffer.baseAddress, buffer.count) {
            return BlockImage.withBounce(buffer.count) { bounce in
                guard transfer(bounce, offset, reading: true) else { return false }
                buffer.copyMemory(from: UnsafeRawBufferPointer(bounce))
                return true
            }
        }
        return transfer(buffer, offset, reading: true)
    }

    func write(from buffer: UnsafeRawBufferPointer, at offset: UInt64) -> Bool {
        if direct && !BlockImage.aligned(buffer.baseAddress, buffer.count) {
            return BlockImage.withBounce(buffer.count) { bounce in
                bounce.copyMemory(from: buffer)
                return transfer(bounce, offset, reading: false)
            }
        }
        return transfer(UnsafeMutableRawBufferPointer(mutating: buffer), offset, reading: false)
    }

    /// Data and the metadata needed to read it back reach stable storage.
    func flush() -> Bool {
        while fdatasync(fd) != 0 {
            if errno != EINTR { return false }
        }
        return true
    }

    private func transfer(_ buffer: UnsafeMutableRawBufferPointer, _ offset: UInt64, reading: Bool) -> Bool {
        var done = 0
        while done < buffer.count {
            let pointer = buffer.baseAddress! + done
            let count = buffer.count - done
            let at = off_t(offset + UInt64(done))
            let result = reading ? pread(fd, pointer, count, at) : pwrite(fd, pointer, count, at)
            if result < 0 {
                if errno == EINTR { continue }
                return false
            }
            if result == 0 { return false }  // past the end of the file
            done += result
        }
        return true
    }

    private static func aligned(_ pointer: UnsafeRawPointer?, _ count: Int) -> Bool {
        guard let pointer else { return true }
        return Int(bitPattern: pointer) % directAlignment == 0 && count % Int(sectorSize) == 0
    }

    private static func withBounce(_ count: Int, _ body: (UnsafeMutableRawBufferPointer) -> Bool) -> Bool {
        let rounded = (count + directAlignment - 1) / directAlignment * directAlignment
        let bounce = UnsafeMutableRawBufferPointer.allocate(byteCount: rounded, alignment: directAlignment)
        defer { bounce.deallocate() }
        return body(UnsafeMutableRawBufferPointer(rebasing: bounce[..<count]))
    }
}
