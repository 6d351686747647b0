import Glibc

/// QEMU's isa-debugcon (`-debugcon file:PATH|stdio|null`, port 0x402 by default through
/// `-global isa-debugcon.iobase=`): every byte the guest writes goes to the file. SeaBIOS
/// prints its log there. Reads answer 0xe9, QEMU's readback value, which is how guests detect it.
final class DebugConsole: PortDevice, Device {
    static let defaultPort: UInt16 = 0x402
    static let readback: UInt8 = 0xE9
    static let fileHandoverName = "debugcon-file"

    let port: UInt16
    private let fd: Int32
    private let ownsFD: Bool
    private let errors = RateLimiter(burst: 1, intervalSeconds: 10)

    /// `inherited`: the file a previous image had open (a live update keeps appending to it).
    init(_ target: DebugConsoleTarget, port: UInt16, inherited: Int32?) throws {
        self.port = port
        switch target {
        case .stdio:
            fd = 2  // stdout may carry the serial console; the log goes beside the VMM's own
            ownsFD = false
        case .null:
            fd = -1
            ownsFD = false
        case .file(let path):
            if let inherited {
                _ = fcntl(inherited, F_SETFD, FD_CLOEXEC)
                fd = inherited
            } else {
                fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND, 0o644)
                guard fd >= 0 else { throw ConfigurationError("-debugcon file:\(path): \(SystemError.describe(errno))") }
            }
            ownsFD = true
        }
    }

    deinit { if ownsFD { close(fd) } }

    func portRead(offset: UInt16, into data: UnsafeMutableRawBufferPointer) {
        data.initializeMemory(as: UInt8.self, repeating: 0)
        data[0] = DebugConsole.readback
    }

    func portWrite(offset: UInt16, from data: UnsafeRawBufferPointer) {
        portWrite(offset: offset, size: data.count, count: 1, from: data)
    }

    /// One `rep outsb` is one write: each access's low byte.
    func portWrite(offset: UInt16, size: Int, count: Int, from data: UnsafeRawBufferPointer) {
        guard fd >= 0 else { return }
        let bytes = (0..<count).map { data[$0 * size] }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if written < 0 { errors.log("-debugcon: write failed: \(SystemError.describe(errno)); output dropped") }
    }

    /// Output is written at once and changes no state: a bridge may log it for later.
    func bridgeAccess(offset: UInt16) -> PortBridgeAccess {
        PortBridgeAccess(constantRead: DebugConsole.readback, writeLogged: true)
    }

    var id: String { "debugcon" }
    var topology: String { "isa-debugcon iobase=0x\(String(port, radix: 16))" }

    func attach(to buses: Buses) throws {
        try buses.ports.register(self, name: "-debugcon", base: port, count: 1)
    }

    var handoverFDs: [(name: String, fd: Int32)] { ownsFD ? [(DebugConsole.fileHandoverName, fd)] : [] }
}

/// Where `-debugcon` output goes.
public enum DebugConsoleTarget: Equatable, Sendable {
    case stdio
    case null
    case file(String)
}
