import CLinux
import Glibc

/// What a live update hands from one process image to the next, apart from the VM state
/// itself (kept separate, as QEMU keeps its cpr-state apart from the migration stream):
/// which inherited fd is what, who the previous image was (to roll back to it), when the
/// guest was paused, and the VM's identity and update history. Written to a memfd whose
/// number travels in the environment variable `CPRState.environmentVariable`.
public struct CPRState: Sendable {
    public static let environmentVariable = "CPRVMM_CPR_STATE_FD"
    public static let sectionName = "cpr"
    public static let sectionVersion: UInt32 = 1
    public static let recordSectionName = "cpr.record"
    public static let recordSectionVersion: UInt32 = 1

    /// Set when the "cpr.record" section could not be read: this image can still roll back.
    public var unreadableRecord: String?
    /// That section as it came, written back unchanged when this image rolls back, so the
    /// previous image (which wrote it) keeps the VM's history and timings.
    var keptRecord: StateSection?

    public struct InheritedFD: Equatable, Sendable {
        public var name: String
        public var fd: Int32
        public init(name: String, fd: Int32) { self.name = name; self.fd = fd }
    }

    public struct Image: Equatable, Sendable {
        public var path: String
        public var version: String
        public var buildID: String
        public init(path: String, version: String, buildID: String) { self.path = path; self.version = version; self.buildID = buildID }
    }

    /// One live update, as `cprctl status` and `x-query-cprvmm` report it.
    public struct Update: Sendable {
        public var generation: UInt64
        public var from: Image
        public var to: Image
        public var pauseMicroseconds: UInt64
        public var totalMicroseconds: UInt64
        /// Where the pause went, in microseconds, by phase name (pause vCPUs, save, exec and
        /// runtime start, VM creation, load, resume).
        public var phases: [(name: String, microseconds: UInt64)] = []
        /// "completed", or "rolled back: REASON".
        public var result: String
        public var time: Double
        public init(generation: UInt64, from: Image, to: Image, pauseMicroseconds: UInt64, totalMicroseconds: UInt64, result: String, time: Double) {
            self.generation = generation; self.from = from; self.to = to
            self.pauseMicroseconds = pauseMicroseconds; self.totalMicroseconds = totalMicroseconds
            self.result = result; self.time = time
        }
    }

    public var fds: [InheritedFD] = []
    /// The generation the new image becomes (1 after the first update).
    public var generation: UInt64
    /// The previous image: its command line (for rollback) and identity.
    public var previousArguments: [String]
    public var previous: Image
    /// CLOCK_MONOTONIC (system-wide, so it survives exec) when the update began and when the
    /// vCPUs were paused: the new image measures the guest pause and the total time from them.
    public var startedMonotonicNanoseconds: UInt64
    public var pausedMonotonicNanoseconds: UInt64
    /// When the state was saved and the exec requested (the rest of the pause is the new image's).
    public var execMonotonicNanoseconds: UInt64 = 0
    /// Tasks holding earlier images' address spaces and fds until those are torn down
    /// outside the pause; whichever image runs reaps them.
    public var teardownHolders: [Int32] = []
    public var vmStarted: Double
    public var history: [Update]
    /// Set when a new image could not load the state and execs back into the previous one.
    public var rollbackReason: String?
    /// Not written: true when this state came back from systemd's fd store after the process
    /// died mid-update (FDStoreRecovery), not through an exec.
    public var fromFDStore = false

    public init(generation: UInt64, previousArguments: [String], previous: Image, startedMonotonicNanoseconds: UInt64,
                pausedMonotonicNanoseconds: UInt64, vmStarted: Double, history: [Update]) {
        self.generation = generation
        self.previousArguments = previousArguments
        self.previous = previous
        self.startedMonotonicNanoseconds = startedMonotonicNanoseconds
        self.pausedMonotonicNanoseconds = pausedMonotonicNanoseconds
        self.vmStarted = vmStarted
        self.history = history
    }

    public func fd(named name: String) -> Int32? { fds.first { $0.name == name }?.fd }

    /// What a reader accepts. A state beyond them would be refused by the new image and by
    /// the rollback alike, and the guest lost: the old image checks `validate()` first.
    public enum Limits {
        public static let fds = 1024
        public static let arguments = 4096
        public static let argumentBytes = 1 << 16
        public static let holders = 1024
        public static let history = 1024
        public static let phases = 32
        static let fdNameBytes = 4096
        static let pathBytes = 4096
        static let versionBytes = 256
        static let reasonBytes = 4096
        static let phaseNameBytes = 64
    }

    /// `text` cut to what a reader accepts for a reason or result (with "..." when cut).
    public static func clipped(_ text: String) -> String {
        guard text.utf8.count > Limits.reasonBytes else { return text }
        var cut = ""
        for character in text {
            if cut.utf8.count + character.utf8.count > Limits.reasonBytes - 3 { break }
            cut.append(character)
        }
        return cut + "..."
    }

    /// Throws, naming the first limit of `Limits` this state breaks, what `read` would refuse.
    public func validate() throws {
        func check(_ ok: Bool, _ what: @autoclosure () -> String) throws {
            guard ok else { throw StateFormatError.malformed("CPR state: \(what()), more than a reader accepts") }
        }
        try check(fds.count <= Limits.fds, "\(fds.count) inherited fds")
        for entry in fds { try check(entry.name.utf8.count <= Limits.fdNameBytes, "fd name of \(entry.name.utf8.count) bytes") }
        try check(previousArguments.count <= Limits.arguments, "\(previousArguments.count) command-line arguments")
        for argument in previousArguments {
            try check(argument.utf8.count <= Limits.argumentBytes, "a command-line argument of \(argument.utf8.count) bytes")
        }
        for image in [previous] + history.flatMap({ [$0.from, $0.to] }) {
            try check(image.path.utf8.count <= Limits.pathBytes, "an image path of \(image.path.utf8.count) bytes")
            try check(image.version.utf8.count <= Limits.versionBytes && image.buildID.utf8.count <= Limits.versionBytes, "an image version or build id over \(Limits.versionBytes) bytes")
        }
        try check((rollbackReason?.utf8.count ?? 0) <= Limits.reasonBytes, "a rollback reason of \(rollbackReason?.utf8.count ?? 0) bytes")
        try check(teardownHolders.count <= Limits.holders, "\(teardownHolders.count) tasks of earlier updates still exiting")
        try check(history.count <= Limits.history, "\(history.count) updates in the history")
        for update in history {
            try check(update.result.utf8.count <= Limits.reasonBytes, "an update result of \(update.result.utf8.count) bytes")
            try check(update.phases.count <= Limits.phases, "\(update.phases.count) phases in one update")
            for phase in update.phases { try check(phase.name.utf8.count <= Limits.phaseNameBytes, "a phase name of \(phase.name.utf8.count) bytes") }
        }
    }

    // MARK: Encoding

    /// Two sections. "cpr" holds what any image needs to roll back (the fds, the previous
    /// command line and image) and keeps its layout forever; "cpr.record" holds timings and
    /// history and may change. An image that cannot read "cpr.record" can still roll back.
    func encodeCore() -> [UInt8] {
        var e = StateEncoder()
        e.u32(UInt32(fds.count))
        for entry in fds { e.string(entry.name); e.u32(UInt32(bitPattern: entry.fd)) }
        e.u64(generation)
        e.u32(UInt32(previousArguments.count))
        for argument in previousArguments { e.string(argument) }
        Self.encode(previous, &e)
        e.bool(rollbackReason != nil)
        e.string(rollbackReason ?? "")
        return e.bytes
    }

    func encodeRecord() -> [UInt8] {
        var e = StateEncoder()
        e.u64(startedMonotonicNanoseconds)
        e.u64(pausedMonotonicNanoseconds)
        e.u64(execMonotonicNanoseconds)
        e.u32(UInt32(teardownHolders.count))
        for pid in teardownHolders { e.u32(UInt32(bitPattern: pid)) }
        e.u64(vmStarted.bitPattern)
        e.u32(UInt32(history.count))
        for update in history {
            e.u64(update.generation)
            Self.encode(update.from, &e)
            Self.encode(update.to, &e)
            e.u64(update.pauseMicroseconds)
            e.u64(update.totalMicroseconds)
            e.string(update.result)
            e.u64(update.time.bitPattern)
            e.u32(UInt32(update.phases.count))
            for phase in update.phases { e.string(phase.name); e.u64(phase.microseconds) }
        }
        return e.bytes
    }

    private static func encode(_ image: Image, _ e: inout StateEncoder) {
        e.string(image.path); e.string(image.version); e.string(image.buildID)
    }

    private static func decodeImage(_ d: inout StateDecoder) throws -> Image {
        Image(path: try d.string(limit: Limits.pathBytes), version: try d.string(limit: Limits.versionBytes), buildID: try d.string(limit: Limits.versionBytes))
    }

    static func decodeCore(_ section: StateSection) throws -> CPRState {
        guard section.name == sectionName, section.version == sectionVersion else {
            throw StateFormatError.malformed("CPR state: section '\(section.name)' version \(section.version) is not 'cpr' version \(sectionVersion)")
        }
        var d = StateDecoder(section)
        let fdCount = Int(try d.u32())
        guard fdCount <= Limits.fds else { throw StateFormatError.malformed("CPR state: \(fdCount) fds is absurd") }
        var fds: [InheritedFD] = []
        for _ in 0..<fdCount { fds.append(InheritedFD(name: try d.string(limit: Limits.fdNameBytes), fd: Int32(bitPattern: try d.u32()))) }
        let generation = try d.u64()
        let argumentCount = Int(try d.u32())
        guard argumentCount <= Limits.arguments else { throw StateFormatError.malformed("CPR state: \(argumentCount) arguments is absurd") }
        var arguments: [String] = []
        for _ in 0..<argumentCount { arguments.append(try d.string(limit: Limits.argumentBytes)) }
        var state = CPRState(
            generation: generation, previousArguments: arguments, previous: try decodeImage(&d),
            startedMonotonicNanoseconds: 0, pausedMonotonicNanoseconds: 0, vmStarted: 0, history: [])
        let hasRollback = try d.bool()
        let reason = try d.string(limit: Limits.reasonBytes)
        state.rollbackReason = hasRollback ? reason : nil
        state.fds = fds
        try d.finish()
        return state
    }

    mutating func decodeRecord(_ section: StateSection) throws {
        guard section.name == Self.recordSectionName, section.version == Self.recordSectionVersion else {
            throw StateFormatError.malformed("CPR state: section '\(section.name)' version \(section.version) is not '\(Self.recordSectionName)' version \(Self.recordSectionVersion)")
        }
        var d = StateDecoder(section)
        startedMonotonicNanoseconds = try d.u64()
        pausedMonotonicNanoseconds = try d.u64()
        execMonotonicNanoseconds = try d.u64()
        let holderCount = Int(try d.u32())
        guard holderCount <= Limits.holders else { throw StateFormatError.malformed("CPR state: \(holderCount) holders is absurd") }
        teardownHolders = []
        for _ in 0..<holderCount { teardownHolders.append(Int32(bitPattern: try d.u32())) }
        vmStarted = Double(bitPattern: try d.u64())
        let historyCount = Int(try d.u32())
        guard historyCount <= Limits.history else { throw StateFormatError.malformed("CPR state: \(historyCount) updates is absurd") }
        history = []
        for _ in 0..<historyCount {
            var update = Update(
                generation: try d.u64(), from: try Self.decodeImage(&d), to: try Self.decodeImage(&d),
                pauseMicroseconds: try d.u64(), totalMicroseconds: try d.u64(), result: try d.string(limit: Limits.reasonBytes),
                time: Double(bitPattern: try d.u64()))
            let phaseCount = Int(try d.u32())
            guard phaseCount <= Limits.phases else { throw StateFormatError.malformed("CPR state: \(phaseCount) phases is absurd") }
            for _ in 0..<phaseCount { update.phases.append((try d.string(limit: Limits.phaseNameBytes), try d.u64())) }
            history.append(update)
        }
        try d.finish()
    }

    // MARK: The memfd

    /// Writes the state into a new memfd (close-on-exec until the exec clears it) and returns its fd.
    public func writeToMemfd() throws -> Int32 {
        let fd = clinux_memfd_create("cprvmm-cpr-state", CLINUX_MFD_CLOEXEC)
        guard fd >= 0 else { throw StateFormatError.io("memfd_create for the CPR state: errno \(-fd)") }
        do {
            let writer = try StateWriter(sink: FileDescriptorSink(fd: fd))
            try writer.writeSection(CPRState.sectionName, version: CPRState.sectionVersion, payload: encodeCore())
            if let keptRecord {
                try writer.writeSection(keptRecord.name, version: keptRecord.version, payload: keptRecord.payload)
            } else {
                try writer.writeSection(CPRState.recordSectionName, version: CPRState.recordSectionVersion, payload: encodeRecord())
            }
            try writer.finish()
            return fd
        } catch {
            close(fd)
            throw error
        }
    }

    /// Reads the state from the start of `fd` (the fd stays open: a rollback writes it anew).
    public static func read(fd: Int32) throws -> CPRState {
        guard lseek(fd, 0, SEEK_SET) == 0 else { throw StateFormatError.io("CPR state fd \(fd): cannot seek (is it the memfd?)") }
        let reader = try StateReader(source: FileDescriptorSource(fd: fd))
        guard let section = try reader.nextSection() else { throw StateFormatError.malformed("CPR state: no section") }
        var state = try decodeCore(section)
        do {
            guard let record = try reader.nextSection() else { throw StateFormatError.malformed("CPR state: no '\(recordSectionName)' section") }
            if record.name == recordSectionName { state.keptRecord = record }
            try state.decodeRecord(record)
            state.keptRecord = nil
        } catch {
            state.unreadableRecord = "\(error)"
        }
        return state
    }
}
