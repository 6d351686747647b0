import CLinux
import Glibc
import Shared
@testable import Worker

/// What a VMM takes from outside, each as a fuzz target: any bytes must give a clean error or
/// a value, never a crash, a hang or unbounded memory. Built two ways (scripts/fuzz):
/// with `-sanitize=fuzzer` libFuzzer drives `run` (the target named by CPRVMM_FUZZ_TARGET);
/// without it, `cprvmm-fuzz replay TARGET FILE...` runs files through a target once, which
/// the tests do with the seed corpus in Tests/Fuzz/corpus.
enum FuzzTarget: String, CaseIterable {
    /// A migration stream: the framing, then every section through its own decoder.
    case state
    /// The CPR state a live update leaves in a memfd.
    case cprState = "cpr-state"
    /// A QMP message: JSON, its shape, negotiation, the command and its arguments.
    case qmp
    /// An HMP line: the words, migration URIs and parameters it names.
    case hmp
    /// A command line: arguments separated by NUL bytes.
    case commandLine = "command-line"

    func run(_ bytes: [UInt8]) {
        switch self {
        case .state: Self.state(bytes)
        case .cprState: Self.cprState(bytes)
        case .qmp: Self.qmp(bytes)
        case .hmp: Self.hmp(bytes)
        case .commandLine: Self.commandLine(bytes)
        }
    }

    private static func state(_ bytes: [UInt8]) {
        guard let reader = try? StateReader(source: MemorySource(bytes)) else { return }
        while let section = try? reader.nextSection() {
            switch section.name {
            case MachineDescription.sectionName: _ = try? MachineDescription.decode(section)
            case PlatformState.sectionName: _ = try? PlatformState.decode(section)
            case Serial16550.sectionName: _ = try? Serial16550.decodeState(section)
            case let name where name.hasPrefix("cpu."):
                if let vcpu = try? VcpuState.decode(section) { _ = try? XSaveArea.adapted(vcpu.xsave) }
            default: break
            }
        }
    }

    /// A memfd per input, as the real CPR state arrives: reused, rewritten each time.
    private static let memfd = clinux_memfd_create("cprvmm-fuzz", CLINUX_MFD_CLOEXEC)

    private static func cprState(_ bytes: [UInt8]) {
        guard memfd >= 0, ftruncate(memfd, 0) == 0, pwrite(memfd, bytes, bytes.count, 0) == bytes.count else { return }
        if let state = try? CPRState.read(fd: memfd) { _ = try? state.validate() }
    }

    /// The bytes of a CPR state like one a live update writes (a seed).
    static func sampleCPRState() -> [UInt8] {
        let image = CPRState.Image(path: "/usr/bin/cprvmm", version: "0.1.0", buildID: "0123abcd")
        var state = CPRState(
            generation: 2, previousArguments: ["/usr/bin/cprvmm", "-m", "1G", "-incoming", "memfd:"], previous: image,
            startedMonotonicNanoseconds: 1_000, pausedMonotonicNanoseconds: 2_000, vmStarted: 1.5e9, history: [])
        state.fds = [.init(name: "ram:pc.ram", fd: 5), .init(name: "vm-state", fd: 6), .init(name: "qmp:/run/q.sock", fd: 7)]
        state.teardownHolders = [100, 101]
        var update = CPRState.Update(generation: 1, from: image, to: image, pauseMicroseconds: 400, totalMicroseconds: 9_000, result: "completed", time: 1.6e9)
        update.phases = [("pause vcpus", 10), ("resume", 20)]
        state.history = [update]
        guard let fd = try? state.writeToMemfd() else { return [] }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 1 << 16)
        let n = pread(fd, &bytes, bytes.count, 0)
        return Array(bytes.prefix(max(0, n)))
    }

    private static func qmp(_ bytes: [UInt8]) {
        // Through the same splitter the server uses, then each message both before and after
        // negotiation.
        var splitter = JSONStreamSplitter(maxMessageSize: QMPServer.maxMessageSize)
        bytes.withUnsafeBytes { splitter.append($0) }
        while let message = try? splitter.next() {
            _ = QMPRequest.decode(message, negotiated: false)
            if case .command(_, let arguments, _) = QMPRequest.decode(message, negotiated: true) {
                _ = JSON.serialize(.object(arguments))
            }
        }
    }

    private static func hmp(_ bytes: [UInt8]) {
        let line = String(decoding: bytes, as: UTF8.self)
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        for word in words {
            _ = try? MigrationURI.parse(word)
            _ = try? QMPCommands.parseMode(word)
        }
        _ = IncomingOption.value(in: words)
        _ = IncomingOption.removed(from: words)
    }

    private static func commandLine(_ bytes: [UInt8]) {
        let arguments = bytes.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        _ = try? CommandLineParser.parse(arguments)
    }
}
