import CLinux
import Glibc

/// Where a RAM block's bytes live. Decides whether it can survive an exec (memfd, shared file)
/// or dies with the process (anonymous memory).
public enum RamBacking: Equatable, Sendable {
    case memfd
    case file(path: String)
    case anonymous

    public var name: String {
        switch self {
        case .memfd: return "memfd"
        case .file: return "file"
        case .anonymous: return "anonymous"
        }
    }
}

/// One host mapping of guest RAM (QEMU's RAMBlock): main RAM, a backend object or firmware.
public final class RamBlock {
    public let name: String
    public let size: UInt64
    public let backing: RamBacking
    public let shared: Bool
    /// The memfd or file descriptor behind the mapping; nil for anonymous memory.
    public let fd: Int32?
    let host: UnsafeMutableRawPointer
    /// What the host granted for transparent huge pages, for the start-up log.
    private var hugePagesAdvised = false
    /// Pages cprvmm's devices wrote, for a pre-copy migration (DeviceWrites).
    let deviceWrites: DeviceWrites

    private init(name: String, size: UInt64, backing: RamBacking, shared: Bool, fd: Int32?, host: UnsafeMutableRawPointer) {
        self.name = name
        self.size = size
        self.backing = backing
        self.shared = shared
        self.fd = fd
        self.host = host
        self.deviceWrites = DeviceWrites(blockSize: size)
    }

    /// Whether `pointer` lies in this block's mapping.
    func contains(_ pointer: UnsafeRawPointer) -> Bool {
        pointer >= UnsafeRawPointer(host) && pointer < UnsafeRawPointer(host) + Int(size)
    }

    deinit {
        munmap(host, Int(size))
        if let fd { close(fd) }
    }

    /// A named memfd (visible in /proc/PID/fd as "memfd:NAME"), mapped shared unless `shared` is false.
    static func memfd(name: String, size: UInt64, shared: Bool = true) throws(SystemError) -> RamBlock {
        let fd = clinux_memfd_create(name, CLINUX_MFD_CLOEXEC)
        guard fd >= 0 else { throw SystemError("memfd_create \(name)", errno: -fd) }
        do {
            try retryingOnEINTR("ftruncate memfd \(name) to \(size) bytes", { ftruncate(fd, off_t(size)) })
            let host = try map(fd: fd, size: size, shared: shared, name: name)
            return RamBlock(name: name, size: size, backing: .memfd, shared: shared, fd: fd, host: host).adviseHugePages()
        } catch {
            close(fd)
            throw error
        }
    }

    /// QEMU's memory-backend-file: a directory gets a fresh unlinked file, a file is used (and grown) in place.
    static func file(name: String, path: String, size: UInt64, shared: Bool) throws(SystemError) -> RamBlock {
        var info = stat()
        let isDirectory = stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
        let fd: Int32
        if isDirectory {
            fd = open(path, CLINUX_O_TMPFILE | O_RDWR | O_CLOEXEC, 0o600)
        } else {
            fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        }
        guard fd >= 0 else { throw SystemError("mem-path \(path)", errno: errno) }
        do {
            var current = stat()
            try retryingOnEINTR("fstat \(path)", { fstat(fd, &current) })
            if UInt64(current.st_size) < size {
                try retryingOnEINTR("ftruncate \(path) to \(size) bytes", { ftruncate(fd, off_t(size)) })
            }
            let host = try map(fd: fd, size: size, shared: shared, name: name)
            return RamBlock(name: name, size: size, backing: .file(path: path), shared: shared, fd: fd, host: host).adviseHugePages()
        } catch {
            close(fd)
            throw error
        }
    }

    /// A block whose memfd or file a previous image of this process handed over (live update):
    /// mapped again at a new address, contents untouched. CLOEXEC is set again at once.
    static func adopt(fd: Int32, name: String, size: UInt64, backing: RamBacking, shared: Bool) throws(SystemError) -> RamBlock {
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        var info = stat()
        try retryingOnEINTR("fstat inherited RAM \(name)", { fstat(fd, &info) })
        guard UInt64(info.st_size) >= size else {
            throw SystemError("inherited RAM \(name) is \(info.st_size) bytes, expected \(size)", errno: EINVAL)
        }
        let host = try map(fd: fd, size: size, shared: shared, name: name)
        let block = RamBlock(name: name, size: size, backing: backing, shared: shared, fd: fd, host: host).adviseHugePages()
        block.adopted = true
        return block
    }

    /// Whether this block came from a previous image (its contents are the guest's).
    public private(set) var adopted = false

    /// Whether the block can outlive this process image: a shared memfd or shared file.
    public var survivesExec: Bool { fd != nil && shared }

    /// Anonymous memory: what QEMU uses without memfd-alloc; it cannot outlive the process.
    static func anonymous(name: String, size: UInt64, shared: Bool = false) throws(SystemError) -> RamBlock {
        let flags = (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | MAP_NORESERVE
        let host = mmap(nil, Int(size), PROT_READ | PROT_WRITE, flags, -1, 0)
        guard let host, host != MAP_FAILED else { throw SystemError("mmap \(size) bytes for \(name)", errno: errno) }
        return RamBlock(name: name, size: size, backing: .anonymous, shared: shared, fd: nil, host: host).adviseHugePages()
    }

    private static func map(fd: Int32, size: UInt64, shared: Bool, name: String) throws(SystemError) -> UnsafeMutableRawPointer {
        let host = mmap(nil, Int(size), PROT_READ | PROT_WRITE, shared ? MAP_SHARED : MAP_PRIVATE, fd, 0)
        guard let host, host != MAP_FAILED else { throw SystemError("mmap \(name)", errno: errno) }
        return host
    }

    /// Fills every page now (QEMU's prealloc=on), so the guest never waits on a first-touch fault.
    func preallocate() {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var offset = 0
        while offset < Int(size) {
            // Reading is not enough for private mappings; write the byte back to force allocation.
            let byte = host.load(fromByteOffset: offset, as: UInt8.self)
            host.storeBytes(of: byte, toByteOffset: offset, as: UInt8.self)
            offset += page
        }
    }

    /// Asks for transparent huge pages (fewer faults and TLB misses, and fewer page faults after
    /// a live update). Only the madvise happens here; what the host granted is worked out when
    /// asked, so the sysfs reads stay out of a live update's pause.
    private func adviseHugePages() -> RamBlock {
        hugePagesAdvised = madvise(host, Int(size), CLINUX_MADV_HUGEPAGE) == 0
        return self
    }

    /// Whether the host's THP policy lets the request take effect, for the start-up log.
    public var hugePages: String {
        let isShmem = backing != .anonymous || shared
        if case .file = backing, !isTmpfs { return "not available (file not on tmpfs)" }
        let policyFile = isShmem
            ? "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
            : "/sys/kernel/mm/transparent_hugepage/enabled"
        let policy = RamBlock.selectedPolicy(in: policyFile) ?? "unknown"
        let granted: Bool
        switch policy {
        case "always", "within_size", "force": granted = true
        case "advise", "madvise": granted = hugePagesAdvised
        default: granted = false
        }
        return granted
            ? "transparent huge pages enabled (host policy \(policy))"
            : "no huge pages (host \(isShmem ? "shmem_enabled" : "enabled")=\(policy))"
    }

    private var isTmpfs: Bool {
        guard let fd else { return true }
        var info = statfs()
        // TMPFS_MAGIC: THP for files works only on shmem.
        return fstatfs(fd, &info) == 0 && info.f_type == 0x0102_1994
    }

    /// The bracketed choice in a sysfs policy file such as "always [madvise] never".
    static func selectedPolicy(in path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = read(fd, &buffer, buffer.count)
        guard n > 0 else { return nil }
        let text = String(decoding: buffer[..<n], as: UTF8.self)
        guard let open = text.firstIndex(of: "["), let close = text.firstIndex(of: "]"), open < close else { return nil }
        return String(text[text.index(after: open)..<close])
    }
}
