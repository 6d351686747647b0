import Glibc
import Shared

/// One outgoing migration (QMP `migrate`) on its own thread, so the event loop keeps answering
/// `query-migrate` while RAM is copied.
///
/// Mode `normal` over a stream (tcp:, unix:, exec:) is pre-copy, as QEMU's: the guest runs
/// while every RAM page is sent, then pass after pass the pages it wrote meanwhile (KVM's dirty
/// log and cprvmm's devices' writes, DirtyPageLog), until the rest can be sent within
/// `downtime-limit` at the rate measured in the last pass; then the guest stops, the rest of
/// RAM, the vCPUs and the devices follow, and the target runs the guest. Other modes and
/// `file:` are stop-and-copy. On any failure or `migrate_cancel` the guest runs on here as if
/// nothing happened, and `query-migrate` says why.
final class OutgoingMigration {
    let uri: MigrationURI
    let mode: MigrationMode
    private unowned let machine: Machine
    private let lock = Lock()
    private var status: MigrationStatus = .setup
    private var errorDescription: String?
    private let started = monotonicNanoseconds()
    private var setupNanoseconds: UInt64 = 0
    private var finishedNanoseconds: UInt64?
    private var downtimeNanoseconds: UInt64?
    private var channel: OutgoingMigrationChannel?
    private var settings: MigrationSettings
    private var stats = Stats()
    private let throttle: MigrationThrottle
    /// Called on the loop thread when the migration ends (HMP `migrate` without -d waits on it).
    var onFinish: [(MigrationStatus, String?) -> Void] = []

    /// QEMU's ram statistics (query-migrate "ram").
    private struct Stats {
        var total: UInt64 = 0
        var transferred: UInt64 = 0
        var remaining: UInt64 = 0
        var normalPages: UInt64 = 0
        var zeroPages: UInt64 = 0
        var passes = 0
        var dirtySyncCount: UInt64 = 0
        var dirtyPagesRate: UInt64 = 0
        var bytesPerSecond: Double = 0
        var expectedDowntimeMs: UInt64?
        var precopyBytes: UInt64 = 0
        var downtimeBytes: UInt64 = 0
        /// The last throttle auto-converge set (it stays in the figures after the end).
        var throttlePercent: UInt64 = 0
    }

    init(machine: Machine, uri: MigrationURI, mode: MigrationMode) {
        self.machine = machine
        self.uri = uri
        self.mode = mode
        settings = machine.migrationSettings
        throttle = MigrationThrottle(vcpus: machine.vcpus)
    }

    /// Checks what can be checked before anything changes; throws a one-line reason.
    static func preflight(uri: MigrationURI, mode: MigrationMode, machine: Machine) throws(QMPError) {
        if let job = machine.outgoingMigration, !job.currentStatus.isFinished {
            throw QMPError("There's a migration process in progress")
        }
        guard machine.runState != .inmigrate else { throw QMPError("the VM is waiting for an incoming migration") }
        guard machine.runState != .postmigrate else {
            throw QMPError("the VM was migrated already (state postmigrate): it runs on the target now")
        }
        if mode == .cprReboot && uri.isStreaming {
            throw QMPError("mode cpr-reboot needs a non-streaming URI (file:PATH), not \(uri)")
        }
    }

    /// Whether this migration is pre-copy (else stop-and-copy).
    var isPrecopy: Bool { mode == .normal && uri.isStreaming }

    /// Starts the migration thread; the loop thread returns at once.
    func start() throws {
        emit(.migration(status: MigrationStatus.setup.rawValue))
        try spawnDetachedThread { [self] in run() }
    }

    var currentStatus: MigrationStatus { lock.withLock { status } }

    /// migrate-set-parameters while the migration runs: downtime-limit and max-bandwidth apply
    /// from the next page on, as in QEMU.
    func update(_ newSettings: MigrationSettings) {
        lock.withLock { settings = newSettings }
    }

    /// `migrate_cancel`: aborts the stream; the thread then fails the migration as cancelled.
    func cancel() {
        let channel: OutgoingMigrationChannel? = lock.withLock {
            guard !status.isFinished else { return nil }
            status = .cancelling
            return self.channel
        }
        channel?.cancel()
    }

    private var cancelling: Bool { lock.withLock { status == .cancelling } }

    /// An event, unless the `events` capability is off (posted to the loop thread).
    private func emit(_ event: MachineEvent) {
        let enabled = lock.withLock { settings.events }
        guard enabled else { return }
        machine.loop.post { [machine] in machine.emit(event) }
    }

    private func set(_ newStatus: MigrationStatus, error: String? = nil) {
        let changed: Bool = lock.withLock {
            // A cancel in flight turns whatever failure follows into "cancelled".
            let final = status == .cancelling && newStatus == .failed ? .cancelled : newStatus
            guard status != final else { return false }
            status = final
            if let error, final == .failed { errorDescription = error }
            if final.isFinished { finishedNanoseconds = monotonicNanoseconds() }
            return true
        }
        guard changed else { return }
        let reported = currentStatus
        let reason = lock.withLock { errorDescription }
        emit(.migration(status: reported.rawValue))
        if reported.isFinished {
            machine.loop.post { [self] in for callback in onFinish { callback(reported, reason) } }
        }
    }

    private func run() {
        let channel: OutgoingMigrationChannel
        do {
            channel = try OutgoingMigrationChannel(uri)
        } catch {
            set(.failed, error: "\(error)")
            return
        }
        let blocks = machine.blocksToCopy(mode.copies)
        lock.withLock {
            self.channel = channel
            setupNanoseconds = monotonicNanoseconds() - started
            stats.total = blocks.reduce(0) { $0 + $1.block.size }
            stats.remaining = stats.total
        }
        set(.active)
        var wasRunning = false
        do {
            let writer = try StateWriter(sink: channel)
            let ram = RamStreamer(writer: writer, blocks: blocks, guestRuns: isPrecopy)
            ram.pace = { [self] written in try pace(written, ram: ram) }
            var pending: [[UInt64]]?
            var log: DirtyPageLog?
            defer { log?.stop() }
            if isPrecopy {
                let runningNow = machine.loop.sync { [machine] in machine.runState == .running }
                try machine.saveDescription(to: writer, copying: mode.copies, wasRunning: runningNow)
                log = try DirtyPageLog(vm: machine.vm, kvm: machine.kvm, memory: machine.memory, blocks: blocks.map(\.block))
                pending = try precopy(ram: ram, log: log!, writer: writer)
            }
            // Stop the VM on the loop thread, where run states change; a throttled vCPU's
            // sleep ends first.
            throttle.set(percent: 0)
            wasRunning = machine.loop.sync { [machine] () -> Bool in
                let running = machine.runState == .running
                if running { machine.pause() }
                machine.runState = .finishMigrate
                if running { machine.emit(.stop) }
                return running
            }
            paused = monotonicNanoseconds()
            let downtimeStart = writer.bytesWritten
            if let log, let pending {
                // The rest: pages written since the last look, and those the last look found.
                let last = try log.collect()
                let rest = zip(pending, last).map { zip($0, $1).map { $0 | $1 } }
                lock.withLock { stats.dirtySyncCount += 1 }
                try ram.send(dirty: rest)
                try machine.saveVcpusAndDevices(to: writer, vcpusThroughBridge: false)
                try machine.saveRunState(to: writer, running: wasRunning)
                try writer.finish()
            } else {
                try machine.saveDescription(to: writer, copying: mode.copies, wasRunning: wasRunning)
                TestStopPoint.reached("saving")
                try machine.saveVcpusAndDevices(to: writer, vcpusThroughBridge: false)
                firstPassStart = monotonicNanoseconds()
                try ram.sendAll()
                try writer.finish()
            }
            // Pre-copy over a socket: done only when the target says it has the guest.
            try channel.finish(requireAcknowledgement: isPrecopy)
            lock.withLock {
                downtimeNanoseconds = monotonicNanoseconds() - paused!
                stats.downtimeBytes = writer.bytesWritten - downtimeStart
                stats.transferred = writer.bytesWritten
                stats.remaining = 0
            }
            machine.loop.sync { [machine] in machine.runState = .postmigrate }
            set(.completed)
            if isPrecopy { machine.loop.post { [machine, uri] in machine.migrationCompleted(to: uri) } }
        } catch {
            channel.cancel()
            throttle.set(percent: 0)
            if let paused { lock.withLock { downtimeNanoseconds = monotonicNanoseconds() - paused } }
            // The VM was not handed over: it continues here as if nothing happened.
            machine.loop.sync { [machine] in
                guard machine.runState == .finishMigrate else { return }
                machine.runState = wasRunning ? .running : .paused
                if wasRunning {
                    machine.resume()
                    machine.emit(.resume)
                }
            }
            set(.failed, error: "\(error)")
        }
    }

    /// The pre-copy passes while the guest runs. Returns the pages the last look found dirty,
    /// not sent yet: they go with the final pass.
    private func precopy(ram: RamStreamer, log: DirtyPageLog, writer: StateWriter) throws -> [[UInt64]] {
        var strikes = 0
        var passStart = monotonicNanoseconds()
        var passBytes = writer.bytesWritten
        firstPassStart = passStart
        firstPassBytes = passBytes
        let protect = { (block: Int, word: Int) throws in try log.protectBeforeSending(blockIndex: block, word: word) }
        startPass()
        if log.initiallySet {
            try ram.send(dirty: try log.collect(), zeroMarkers: false, prepare: protect)
        } else {
            try ram.sendAll()
        }
        while true {
            let dirty = try log.collect()
            let now = monotonicNanoseconds()
            let elapsed = max(now - passStart, 1)
            let sent = writer.bytesWritten - passBytes
            let dirtyBytes = RamStreamer.count(dirty) * UInt64(RamStreamer.pageSize)
            // A short pass mostly fills this host's socket buffer: its own rate would promise a
            // downtime the link cannot keep. Below 100 ms, the average since the first pass.
            let rate = elapsed >= 100_000_000
                ? Double(sent) * 1e9 / Double(elapsed)
                : Double(writer.bytesWritten - firstPassBytes) * 1e9 / Double(max(now - firstPassStart, 1))
            // Rounded up: only nothing left to send fits a downtime-limit of 0.
            let expectedMs = rate > 0 ? UInt64((Double(dirtyBytes) / rate * 1000).rounded(.up)) : UInt64.max
            let current = lock.withLock { () -> MigrationSettings in
                stats.dirtySyncCount += 1
                stats.remaining = dirtyBytes
                stats.bytesPerSecond = rate
                stats.dirtyPagesRate = UInt64(Double(dirtyBytes / UInt64(RamStreamer.pageSize)) * 1e9 / Double(elapsed))
                stats.expectedDowntimeMs = expectedMs == UInt64.max ? nil : expectedMs
                return settings
            }
            if expectedMs <= current.downtimeLimitMs { return dirty }
            if current.maxPasses > 0 && UInt64(lock.withLock { stats.passes }) >= current.maxPasses {
                Log.info("migration to \(uri): switching over after \(current.maxPasses) passes (x-max-passes), \(dirtyBytes >> 10) KiB still dirty, expected downtime \(expectedMs) ms")
                return dirty
            }
            // QEMU's auto-converge rule: the guest dirtied more than half of what was sent, twice.
            if current.autoConverge, dirtyBytes > sent / 2 {
                strikes += 1
                if strikes >= 2 {
                    strikes = 0
                    let percent = throttle.currentPercent == 0
                        ? current.throttleInitial : min(throttle.currentPercent + current.throttleIncrement, current.throttleMax)
                    throttle.set(percent: percent)
                    lock.withLock { stats.throttlePercent = percent }
                    Log.info("migration to \(uri): the guest dirties RAM faster than it can be sent; throttling its vCPUs to \(percent)%")
                }
            }
            passStart = now
            passBytes = writer.bytesWritten
            startPass()
            try ram.send(dirty: dirty, prepare: protect)
        }
    }

    private func startPass() {
        let pass: Int = lock.withLock {
            stats.passes += 1
            return stats.passes
        }
        emit(.migrationPass(pass: pass))
    }

    /// When the first (or only) pass over RAM began (migration thread only).
    private var firstPassStart: UInt64 = 0
    private var firstPassBytes: UInt64 = 0
    /// When the guest was stopped for the last pass (migration thread only).
    private var paused: UInt64?
    private var windowStart: UInt64 = 0
    private var windowBytes: UInt64 = 0

    /// After every run of pages: counters, a cancel, and the bandwidth limit (sleeping until
    /// the stream is back under max-bandwidth, averaged over windows of 100 ms).
    private func pace(_ written: UInt64, ram: RamStreamer) throws {
        let limit: UInt64 = lock.withLock {
            stats.transferred = written
            stats.normalPages = ram.counters.normalPages
            stats.zeroPages = ram.counters.zeroPages
            if paused == nil { stats.precopyBytes = written }
            // The first pass (or stop-and-copy's only one) has no dirty count yet: what it has
            // not gone over is what remains, and its own rate so far is the rate.
            if stats.dirtySyncCount == 0 {
                stats.remaining = stats.total - min(stats.total, ram.counters.visitedPages * UInt64(RamStreamer.pageSize))
                let elapsed = monotonicNanoseconds() - firstPassStart
                if elapsed > 100_000_000 { stats.bytesPerSecond = Double(written) * 1e9 / Double(elapsed) }
            }
            return settings.maxBandwidth
        }
        if cancelling { throw MigrationChannelError("the migration to \(uri) was cancelled") }
        // The guest is paused for the last pass: as QEMU, no limit then.
        guard limit > 0, paused == nil else { return }
        let window: UInt64 = 100_000_000
        var now = monotonicNanoseconds()
        if now - windowStart >= window {
            windowStart = now
            windowBytes = written
        }
        while written - windowBytes > limit / 10 {
            let end = windowStart + window
            if now < end {
                sleepNanoseconds(min(end - now, 10_000_000))
            }
            if cancelling { throw MigrationChannelError("the migration to \(uri) was cancelled") }
            now = monotonicNanoseconds()
            if now - windowStart >= window {
                windowStart = now
                windowBytes += limit / 10
            }
        }
    }

    /// QEMU's MigrationInfo for `query-migrate`.
    var info: JSONObject {
        lock.withLock {
            let now = monotonicNanoseconds()
            var object: JSONObject = ["status": .string(status.rawValue)]
            object["total-time"] = .int(Int64(((finishedNanoseconds ?? now) - started) / 1_000_000))
            object["setup-time"] = .int(Int64(setupNanoseconds / 1_000_000))
            if let downtimeNanoseconds {
                object["downtime"] = .int(Int64(downtimeNanoseconds / 1_000_000))
                object["x-downtime-us"] = .int(Int64(downtimeNanoseconds / 1000))
            } else if let expected = stats.expectedDowntimeMs {
                object["expected-downtime"] = .int(Int64(expected))
            }
            let pageSize = UInt64(RamStreamer.pageSize)
            object["ram"] = .object([
                "transferred": .int(Int64(stats.transferred)), "total": .int(Int64(stats.total)),
                "remaining": .int(Int64(stats.remaining)),
                "duplicate": .int(Int64(stats.zeroPages)), "normal": .int(Int64(stats.normalPages)),
                "normal-bytes": .int(Int64(stats.normalPages * pageSize)), "page-size": .int(Int64(pageSize)),
                "dirty-sync-count": .int(Int64(stats.dirtySyncCount)),
                "dirty-pages-rate": .int(Int64(stats.dirtyPagesRate)),
                "mbps": .double(stats.bytesPerSecond * 8 / 1e6),
                "pages-per-second": .int(Int64(stats.bytesPerSecond / Double(pageSize))),
                "precopy-bytes": .int(Int64(stats.precopyBytes)), "downtime-bytes": .int(Int64(stats.downtimeBytes)),
                "postcopy-bytes": .int(0),
                "x-passes": .int(Int64(stats.passes)),
            ])
            if settings.autoConverge { object["cpu-throttle-percentage"] = .int(Int64(stats.throttlePercent)) }
            if let errorDescription { object["error-desc"] = .string(errorDescription) }
            return object
        }
    }
}
