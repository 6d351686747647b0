// The virtual machine that a command line describes: what CommandLineParser produces and
// the rest of the worker consumes. Plain values only; the parser validates them, so code
// that receives a MachineConfig from CommandLineParser may rely on the documented ranges.

/// The virtual machine to run.
public struct MachineConfig: Equatable, Sendable {
    /// `-name NAME` or `-name guest=NAME`.
    public var name: String? = nil
    /// Guest RAM in bytes: `-m SIZE`, or the size of the `-machine memory-backend=ID` backend.
    /// Always a multiple of `ramAlignment` within `minimumRAMSize...maximumRAMSize`.
    public var ramSize: UInt64 = MachineConfig.defaultRAMSize
    /// Number of virtual CPUs: `-smp N`, in `1...maximumCPUs`.
    public var smp: Int = 1
    /// `-machine memfd-alloc=on|off`: allocate guest RAM with memfd_create.
    public var memfdAlloc: Bool = false
    /// `-machine x-allow-tsc-mismatch=on`: take a state whose guest TSC ran at another rate.
    public var allowTSCMismatch = false
    /// `-log-level error|warning|info|debug` (default info).
    public var logLevel = "info"
    /// `-machine memory-backend=ID`: the id of the entry of `memoryBackends` that is guest RAM.
    public var memoryBackendID: String? = nil
    /// `-object memory-backend-*` definitions; when non-empty, exactly one, named by `memoryBackendID`.
    public var memoryBackends: [MemoryBackendConfig] = []
    /// The serial port (COM1).
    public var serial: SerialConfig = .stdio
    /// QMP servers: `-qmp unix:PATH,server=on,wait=off`, any number.
    public var qmpSockets: [String] = []
    /// Human monitors: `-monitor stdio` or `-monitor unix:PATH,server=on,wait=off`.
    public var monitors: [MonitorConfig] = []
    /// `-S`: create the VM but start its vCPUs only on `cont`.
    public var startPaused = false
    /// `-incoming URI` or `-incoming defer`: the VM's state comes from a migration stream.
    public var incoming: IncomingConfig? = nil
    /// `-kernel FILE`: a Linux kernel image to boot.
    public var kernel: String? = nil
    /// `-bios FILE`: a firmware image to boot.
    public var bios: String? = nil
    /// `-builtin-guest`: settings of the built-in guest, which runs when there is neither
    /// `kernel` nor `bios`.
    public var builtinGuest = BuiltinGuestConfig()
    /// `-device isa-debug-exit`: a port where a guest write ends the VM (absent by default, as in QEMU).
    public var debugExit: DebugExitConfig? = nil
    /// `-debugcon` (QEMU's isa-debugcon, where SeaBIOS logs) and its port (`-global isa-debugcon.iobase=`).
    public var debugcon: DebugConsoleTarget? = nil
    public var debugconIOBase: UInt16 = 0x402
    /// `-device virtio-blk-pci` and `-drive if=virtio` disks, in command-line order.
    public var disks: [VirtioBlockConfig] = []
    /// `-device virtio-net-pci` and `-nic tap` NICs, in command-line order.
    public var nics: [VirtioNetConfig] = []

    public init() {}

    public static let defaultRAMSize: UInt64 = 128 << 20
    public static let minimumRAMSize: UInt64 = 16 << 20
    /// What the page tables cprvmm builds for direct boot can map (docs/guest.md).
    public static let maximumRAMSize: UInt64 = 256 << 30
    /// Guest RAM sizes must be multiples of this (one page).
    public static let ramAlignment: UInt64 = 4 << 10
    public static let maximumCPUs = 255

    /// The backend that provides guest RAM, if `-machine memory-backend=ID` was given.
    public var memoryBackend: MemoryBackendConfig? {
        guard let id = memoryBackendID else { return nil }
        return memoryBackends.first { $0.id == id }
    }

    /// True when the built-in guest runs (neither `-kernel` nor `-bios`).
    public var usesBuiltinGuest: Bool { kernel == nil && bios == nil }
}

/// `-object memory-backend-{memfd,file,ram},id=ID,size=SIZE[,share=on|off][,mem-path=PATH][,prealloc=on|off]`.
public struct MemoryBackendConfig: Equatable, Sendable {
    public enum Kind: String, CaseIterable, Sendable {
        case memfd = "memory-backend-memfd"
        case file = "memory-backend-file"
        case ram = "memory-backend-ram"

        /// QEMU's default for `share=`: on for memfd, off for file and ram.
        public var defaultShare: Bool { self == .memfd }
    }

    public var kind: Kind
    public var id: String
    /// Size in bytes.
    public var size: UInt64
    /// MAP_SHARED (true) or MAP_PRIVATE (false).
    public var share: Bool
    /// The file to map; set exactly for `.file`.
    public var memPath: String?
    /// Populate the memory at start-up.
    public var prealloc: Bool = false

    /// `share: nil` means the kind's QEMU default (`Kind.defaultShare`).
    public init(kind: Kind, id: String, size: UInt64, share: Bool? = nil, memPath: String? = nil, prealloc: Bool = false) {
        self.kind = kind
        self.id = id
        self.size = size
        self.share = share ?? kind.defaultShare
        self.memPath = memPath
        self.prealloc = prealloc
    }
}

/// Where an incoming migration comes from.
public enum IncomingConfig: Equatable, Sendable {
    /// `-incoming defer`: the URI arrives later with `migrate-incoming`.
    case deferred
    case uri(MigrationURI)
}

/// Where a human monitor (HMP) listens.
public enum MonitorConfig: Equatable, Sendable {
    case stdio
    case unixServer(path: String)
}

/// Where the serial port (COM1) goes.
public enum SerialConfig: Equatable, Sendable {
    /// No serial port (`-serial none`, or `-nodefaults` without `-serial`).
    case none
    /// A serial port whose output is discarded (`-serial null`).
    case null
    /// Standard input and output (`-serial stdio`; the default).
    case stdio
    /// `-serial file:PATH`: output written to a file.
    case file(path: String)
    /// `-serial unix:PATH,server=on,wait=off`: a listening Unix socket; start-up never waits for a client.
    case unixServer(path: String)
}

/// `-builtin-guest fill=PCT,mode=sleep|spin,disk=...,dirty=PCT` (cprvmm-specific).
public struct BuiltinGuestConfig: Equatable, Sendable {
    /// What the built-in guest does with a virtio disk (BI_DISK_MODE).
    public enum DiskMode: String, CaseIterable, Sendable {
        /// Write sequence-numbered blocks, read them back and check them.
        case check
        /// Benchmarks, unchecked: 4 KiB at random places, 1 MiB in order.
        case randread, randwrite, seqread, seqwrite

        var bootInfoValue: UInt64 { UInt64(DiskMode.allCases.firstIndex(of: self)!) }
    }

    public enum Mode: String, CaseIterable, Sendable {
        /// HLT until the next 1 kHz timer tick: cheap on host CPU.
        case sleep
        /// Busy loop, for benchmarks.
        case spin
    }

    /// Share of guest RAM, in percent, that the built-in guest fills with its pattern.
    public var fillPercent: Int = 25
    public var mode: Mode = .sleep
    public var disk: DiskMode = .check
    /// The network responder's IPv4 address (`ip=`), with a NIC: QEMU's user-network guest address.
    public var ip: [UInt8] = [10, 0, 2, 15]
    /// How much memory the guest rewrites per second (`dirty=`), in percent of guest RAM:
    /// a known dirty rate for pre-copy migration, checked by the guest (BI_DIRTY_RATE). 0: off.
    public var dirtyPercent: Int = 0

    public static let fillPercentRange = 0...90
    public static let dirtyPercentRange = 0...1000

    public init(fillPercent: Int = 25, mode: Mode = .sleep) {
        self.fillPercent = fillPercent
        self.mode = mode
    }
}

/// `-device isa-debug-exit,iobase=N,iosize=N` (QEMU's defaults: 0x501, 2 ports).
public struct DebugExitConfig: Equatable, Sendable {
    public var ioBase: UInt16 = 0x501
    public var ioSize: UInt16 = 2
    public init() {}
}
