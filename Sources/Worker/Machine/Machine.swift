import CGuest
import CKVM
import CLinux
import Glibc
import Shared

/// A running VM: KVM objects, guest memory, devices, vCPU threads and the event loop.
public final class Machine {
    /// Real-mode support pages just below the firmware area (QEMU's choice of addresses).
    static let identityMapAddress: UInt64 = 0xFEFF_C000
    static let realModeTSSAddress: UInt64 = 0xFEFF_D000
    /// How often the event loop checks for vCPUs halted with interrupts off.
    static let haltWatchdogMilliseconds = 1000

    public let config: MachineConfig
    let kvm: Kvm
    let vm: VmFd
    let memory: MachineMemory
    let ports = IoBus()
    let mmio = MmioBus()
    /// Every device; save, load, handover and the fd store walk it.
    let devices: DeviceRegistry
    let loop: EventLoop
    private(set) var vcpus: [VcpuThread] = []
    private(set) var serialBackend: SerialBackend?
    private(set) var serialPort: SerialPort?
    /// PCI bus 0 (I440FX).
    private(set) var pciBus: PciBus?
    /// The CPUID table each vCPU shows the guest (this host's, or the one a loaded state
    /// brought: CPUIDState), and what this host would show; this host's TSC rate.
    var guestCPUID: [[CPUIDState.Entry]] = []
    private(set) var hostCPUID: [[CPUIDState.Entry]] = []
    private(set) var hostTSCKHz: UInt64 = 0
    /// The GSI routing table's MSI routes (devices' MSI-X vectors).
    private(set) lazy var msiRoutes = MsiRoutes(vm: vm)
    private let exitLock = Lock()
    private var exitStatus: Int32?
    /// Changed only on the loop thread.
    public internal(set) var runState: RunState
    /// Wall-clock time the VM was created (the live update will carry it over).
    public internal(set) var vmStarted = ProcessClock.now()
    /// `migrate-set-parameters mode` and `cpr-exec-command`.
    var migrationMode: MigrationMode = .normal
    var cprExecCommand: [String] = []
    /// Pre-copy migration settings (migrate-set-parameters / migrate-set-capabilities).
    var migrationSettings = MigrationSettings()
    /// `migrate-set-parameters x-cpr-exec-bridges`: a live update keeps the guest running in
    /// vCPU bridges across the exec (VcpuBridge). On by default.
    var cprExecBridges = true
    /// `migrate-set-parameters x-cpr-exec-probe`: a live update first runs the target program
    /// with `--cpr-probe` and execs only into one that reads this update's state (CPRExecProbe).
    /// On by default; off for a target older than the probe.
    var cprExecProbe = true
    /// A live update is scheduled or running; a SIGHUP meanwhile sets `updateSignalDeferred`.
    var liveUpdatePending = false
    /// The process group of the running update probe (CPRExecProbe), if one runs.
    var liveUpdateProbe: pid_t?
    var updateSignalDeferred = false
    /// Live updates this VM went through (generation = how many succeeded), carried from
    /// image to image in the CPR state; and the latest live update's outcome for query-migrate.
    var updateGeneration: UInt64 = 0
    var updateHistory: [CPRState.Update] = []
    var liveUpdateInfo: JSONObject?
    /// Live updates this image refused or failed (the VM stayed on it), so that a client can
    /// tell a new failure from an earlier one with the same reason.
    var liveUpdateFailures = 0
    /// The MSRs a save reads (Machine+State), fetched once.
    var msrIndexList: [UInt32]?
    /// Teardown holders and vCPU bridges of live updates, reaped on SIGCHLD.
    let updateTasks = UpdateTasks()
    /// The latest outgoing migration (QMP `query-migrate` reports it), and the incoming one.
    var outgoingMigration: OutgoingMigration?
    var incomingMigration: IncomingMigration?
    /// Monitors subscribe here for STOP / RESUME / SHUTDOWN; called on the loop thread.
    var eventListeners: [(MachineEvent) -> Void] = []
    /// Monitor servers, kept alive with the machine.
    var monitors: [AnyObject] = []

    /// What a previous image of this process handed over in a live update (nil on a fresh start).
    let cprState: CPRState?

    public init(config: MachineConfig, cprState: CPRState? = nil) throws {
        self.config = config
        self.cprState = cprState
        self.runState = config.incoming != nil || cprState != nil ? .inmigrate : config.startPaused ? .prelaunch : .running
        // Files first: a wrong path is the user's to fix whatever the host's KVM can do.
        let firmware = try config.bios.map { try Firmware.load(path: $0) }
        let kernel = try config.kernel.map { try ElfKernel.load(path: $0) }
        let kvm = try Kvm()
        StartupTrace.mark("open kvm")
        let maxVcpus = min(Int(GUEST_MAX_VCPUS), kvm.maxVcpus)
        guard config.smp <= maxVcpus else {
            throw ConfigurationError("-smp \(config.smp): this host allows at most \(maxVcpus) vCPUs")
        }
        self.kvm = kvm
        self.vm = try kvm.createVM()
        StartupTrace.mark("create vm")
        var inheritedRAM: [String: Int32] = [:]
        for entry in cprState?.fds ?? [] where entry.name.hasPrefix("ram:") { inheritedRAM[String(entry.name.dropFirst(4))] = entry.fd }
        self.memory = try MachineMemory(config: config, firmware: firmware, inherited: inheritedRAM)
        StartupTrace.mark("map ram")
        self.loop = try EventLoop()
        self.devices = DeviceRegistry(buses: Buses(ports: ports, mmio: mmio))
        // A live update logs this after the guest runs again: it reads sysfs and writes stderr.
        if cprState == nil { logMemorySummary() }

        try vm.setRealModeSupportPages(identityMap: Machine.identityMapAddress, tss: Machine.realModeTSSAddress)
        // Memory slots before the irqchip: once an irqchip exists, every slot change waits
        // for an SRCU grace period (~6 ms on this host), and a live update waits with it.
        StartupTrace.mark("loop, tss")
        try memory.register(with: vm)
        StartupTrace.mark("memory slots")
        try vm.createIrqchipAndPit()
        StartupTrace.mark("irqchip, pit")
        try createDevices()
        StartupTrace.mark("devices")
        // An incoming VM gets everything from the stream; writing a guest image into RAM
        // would even overwrite the RAM a cpr-reboot left in place.
        let entry: BootEntry
        if config.incoming != nil {
            entry = .resetVector
        } else if let kernel {
            entry = try kernel.load(into: memory.guest, name: config.kernel!)
        } else if firmware != nil {
            memory.loadFirmwareShadow()
            entry = .resetVector
        } else {
            entry = try BuiltinGuest.load(into: memory.guest)
        }
        try createVcpus(entry: entry, isBuiltinGuest: kernel == nil && firmware == nil)
        StartupTrace.mark("vcpus")
    }

    private func createDevices() throws {
        try createBoardDevices()
        if config.serial != .none { try createSerialPort() }
        // After COM1, so that an overlap names the option that moved a device onto it.
        if let target = config.debugcon {
            try devices.add(DebugConsole(target, port: config.debugconIOBase, inherited: inheritedFD(DebugConsole.fileHandoverName)))
        }
        if let debugExit = config.debugExit {
            try devices.add(DebugExit(ioBase: debugExit.ioBase, ioSize: debugExit.ioSize) { [unowned self] value, status in
                let reason = "the guest wrote 0x\(String(value, radix: 16)) to isa-debug-exit: exiting with status \(status)"
                requestExit(status: status, reason: reason, guest: true, cause: "guest-shutdown")
            })
        }
    }

    /// What QEMU's `pc` machine has on every VM: the i440FX/PIIX3 PCI chipset, the RTC and
    /// CMOS, port 0x92 and fw_cfg. Firmware needs them; other guests may probe them.
    private func createBoardDevices() throws {
        let chipset = try I440FX(buses: devices.buses)
        chipset.bus.setIrqLine = { [unowned self] irq, level in
            do { try vm.setIrqLine(irq, level: level) } catch { Log.error("PCI interrupt: \(error)") }
        }
        chipset.bus.onResetRequest = { [unowned self] reason in guestRequestedReset(reason) }
        try devices.add(chipset)
        pciBus = chipset.bus
        let below4G = memory.ramRanges.first.map { $0.end - $0.start } ?? 0
        try devices.add(CmosRtc(ramBelow4G: below4G, ramAbove4G: config.ramSize - below4G, cpus: config.smp))
        try devices.add(SystemControlPort { [unowned self] reason in guestRequestedReset(reason) })
        try devices.add(FirmwareConfig.pc(
            ramRanges: memory.ramRanges, ramSize: config.ramSize, cpus: config.smp,
            reserved: [(Machine.identityMapAddress, 0x4000)], bootOrder: Machine.bootOrder(config.disks)))
        try createDisks(on: chipset.bus)
        try createNICs(on: chipset.bus)
    }

    /// A system reset is not implemented yet: the VM ends, as QEMU's `-no-reboot` makes it.
    private func guestRequestedReset(_ reason: String) {
        requestExit(status: 0, reason: "\(reason); cprvmm cannot reset a VM yet, so the VM stops", guest: true, cause: "guest-reset")
    }

    /// An fd a previous image handed over (a live update, or systemd's fd store after a crash).
    func inheritedFD(_ name: String) -> Int32? { cprState?.fd(named: name) }

    private func createSerialPort() throws {
        let backend = try SerialBackend(config.serial) { [cprState] name in
            cprState?.fd(named: name) ?? (name == SerialBackend.fileHandoverName ? FDStoreRecovery.keptConsole : nil)
        }
        let port = SerialPort(backend: backend) { [unowned self] level in
            do { try vm.setIrqLine(SerialPort.irq, level: level) } catch { Log.error("serial interrupt: \(error)") }
        }
        port.onSpaceAvailable = { [unowned self] in loop.post { backend.resumeInput(loop: self.loop) } }
        try devices.add(port)
        try backend.attach(to: loop) { bytes in port.receive(bytes) }
        serialBackend = backend
        serialPort = port
    }

    private func createVcpus(entry: BootEntry, isBuiltinGuest: Bool) throws {
        let supported = try kvm.supportedCPUID()
        StartupTrace.mark("supported cpuid")
        var tscKHz: UInt64 = 0
        for index in 0..<config.smp {
            let vcpu = try vm.createVcpu(index: index)
            let cpuid = GuestCPUID.entries(supported: supported, vcpu: index)
            try vcpu.setCPUID(cpuid)
            hostCPUID.append(cpuid.map(CPUIDState.Entry.init))
            if index == 0 { tscKHz = UInt64(try vcpu.tscKHz()) }
            if case .longMode(let rip, let userMode, let withIDT) = entry {
                var sregs = try vcpu.getSpecialRegisters()
                sregs = X86LongMode.specialRegisters(sregs, vcpu: index, vcpuCount: config.smp, userMode: userMode, withIDT: withIDT)
                try vcpu.setSpecialRegisters(sregs)
                var regs = kvm_regs()
                regs.rip = rip
                regs.rsp = X86LongMode.userStackTop(index)
                regs.rdi = UInt64(GUEST_BOOT_INFO)
                regs.rsi = UInt64(index)
                regs.rflags = 0x2 | (userMode ? 0x3000 : 0)  // IOPL 3 lets user mode do port I/O
                try vcpu.setRegisters(regs)
                // Direct boot: secondary vCPUs run at once instead of waiting for INIT/SIPI.
                try vcpu.setMPState(CKVM_MP_STATE_RUNNABLE)
            }
            vcpus.append(VcpuThread(vcpu: vcpu, handler: self))
        }
        guestCPUID = hostCPUID
        hostTSCKHz = tscKHz
        if case .longMode = entry {
            try X86LongMode.writeStructures(
                into: memory.guest, vcpuCount: config.smp,
                identityMapBytes: max(MachineMemory.highMemoryStart, memory.ramRanges.last!.end))
            var info = BootInfo(tscKHz: tscKHz, cpuCount: config.smp, ramRanges: memory.ramRanges)
            if isBuiltinGuest {
                info.mode = config.builtinGuest.mode == .spin ? 1 : 0
                info.fillRanges = BuiltinGuest.fillRanges(ram: memory.ramRanges, totalRAM: config.ramSize, percent: config.builtinGuest.fillPercent)
                if let disk = disks.first {
                    // No firmware assigns BARs for the built-in guest: the VMM does, as SeaBIOS would.
                    disk.placeForBuiltinGuest()
                    info.diskBar = UInt64(GUEST_DISK_BAR4)
                    info.diskSectors = disk.image.size / BlockImage.sectorSize
                    info.diskReadOnly = disk.image.readOnly
                    info.diskMode = config.builtinGuest.disk.bootInfoValue
                }
                if let nic = nics.first {
                    nic.placeForBuiltinGuest()
                    info.netBar = UInt64(GUEST_NET_BAR4)
                    info.netIP = config.builtinGuest.ip
                }
                let dirtyPercent = config.builtinGuest.dirtyPercent
                if dirtyPercent > 0, let area = BuiltinGuest.dirtyArea(ram: memory.ramRanges, fill: info.fillRanges) {
                    info.dirtyRate = BuiltinGuest.dirtyRate(percent: dirtyPercent, ramSize: config.ramSize)
                    info.dirtyArea = area
                    try clearDirtyArea(area)
                }
            }
            try info.write(into: memory.guest)
        }
    }

    /// The dirtying workload's first sweep expects zeros in its area, as a memfd or anonymous
    /// memory starts; a mem-path file may still hold an earlier VM's RAM. So a file's area is
    /// cleared: a hole punched where the file system allows, else written with zeros.
    private func clearDirtyArea(_ area: BootInfo.Range) throws {
        guard case .file = memory.blocks[0].backing else { return }
        let bytes = try memory.guest.slice(at: GuestAddress(area.start), count: Int(area.end - area.start))
        if madvise(bytes.baseAddress, bytes.count, CLINUX_MADV_REMOVE) != 0 {
            bytes.initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    /// Runs the VM until the guest ends it, a fatal error, `quit`, or SIGINT/SIGTERM.
    /// Returns the process exit status.
    public func run() throws -> Int32 {
        try watchSignals()
        try loop.addTimer(intervalMilliseconds: Machine.haltWatchdogMilliseconds) { [unowned self] in
            probeIdleVcpus()
            updateTasks.reap()  // a backstop: a task that exited before its pid was listed
            extendServiceTimeoutIfBusy()
        }
        StartupTrace.mark("signals, timer")
        try startMonitors()
        StartupTrace.mark("monitors")
        followRunStateForService()
        VcpuThread.installKickHandler()
        for vcpu in vcpus { try vcpu.start() }
        StartupTrace.mark("vcpu threads")
        if let cprState {
            do {
                try LiveUpdateArrival.complete(cprState, machine: self)
            } catch {
                var uri: MigrationURI?
                if case .uri(let incoming) = config.incoming { uri = incoming }
                Log.error(LiveUpdateArrival.failed(cprState, reason: "\(error)", incoming: uri))
                return 1
            }
        } else if case .uri(let uri) = config.incoming {
            // READY=1 follows when the state is loaded (IncomingMigration).
            try startIncomingMigration(uri)
        } else {
            if runState == .running { resume() }
            reportReadyToService()
            storeFDsWithService()
        }
        try startServiceWatchdog()
        loop.run()
        if liveUpdatePending {
            // The VM is shutting down: an update whose probe still runs is dropped.
            if let probe = liveUpdateProbe { kill(-probe, SIGKILL) }
            Log.info("live update dropped: the VM is shutting down")
        }
        shutdownVcpus()
        serialBackend?.restoreTerminal()
        emptyServiceFDStore()
        return exitLock.withLock { exitStatus ?? 0 }
    }

    /// Pauses every vCPU and returns once all are outside KVM_RUN, then quiesces the devices
    /// (as QEMU stops device I/O with the VM). Returns how long that took (ns).
    @discardableResult
    public func pause() -> UInt64 {
        let start = monotonicNanoseconds()
        for vcpu in vcpus { vcpu.request(.paused) }
        for vcpu in vcpus { vcpu.wait(for: .paused) }
        devices.quiesce()
        return monotonicNanoseconds() - start
    }

    /// Lets the devices and every vCPU run again after `pause()` (devices first: a vCPU's
    /// first access may need them).
    public func resume() {
        devices.resume()
        for vcpu in vcpus { vcpu.request(.running) }
    }

    /// Ends the VM with `status`; the first request wins. Safe from any thread: the state
    /// change and the SHUTDOWN event happen on the loop thread, then the loop stops.
    public func requestExit(status: Int32, reason: String?, guest: Bool = false, cause: String = "host-signal", state: RunState = .shutdown) {
        let first = exitLock.withLock { () -> Bool in
            guard exitStatus == nil else { return false }
            exitStatus = status
            return true
        }
        guard first else { return }
        if let reason { Log.info(reason) }
        Worker.notifyService(.stopping(status: "shutting down: " + (reason ?? cause)))
        loop.post { [unowned self] in
            runState = state
            emit(.shutdown(guest: guest, reason: cause))
            loop.stop()
        }
    }

    /// An end was requested (SIGTERM, quit, the guest): the loop stops after the current work.
    var isExiting: Bool { exitLock.withLock { exitStatus != nil } }

    func emit(_ event: MachineEvent) {
        for listener in eventListeners { listener(event) }
    }

    private func shutdownVcpus() {
        for vcpu in vcpus { vcpu.request(.stopped) }
        for vcpu in vcpus { vcpu.join() }
    }

    /// SIGINT and SIGTERM end the VM in order (exit 0); SIGHUP asks for a live update
    /// (systemd's reload); SIGCHLD reaps the tasks earlier updates left. All arrive through a
    /// signalfd on the loop thread.
    private func watchSignals() throws {
        var mask = sigset_t()
        sigemptyset(&mask)
        for signal in Worker.handledSignals { sigaddset(&mask, signal) }
        let fd = signalfd(-1, &mask, Int32(SFD_CLOEXEC | SFD_NONBLOCK))
        guard fd >= 0 else { throw SystemError("signalfd", errno: errno) }
        try loop.add(fd, events: CLINUX_EPOLLIN) { [unowned self] _ in
            var info = signalfd_siginfo()
            while read(fd, &info, MemoryLayout<signalfd_siginfo>.size) > 0 {
                switch Int32(info.ssi_signo) {
                case SIGHUP:
                    liveUpdateOnSignal()
                case SIGCHLD:
                    updateTasks.reap()
                case SIGINT:
                    requestExit(status: 0, reason: "received SIGINT, shutting down")
                default:
                    requestExit(status: 0, reason: "received SIGTERM, shutting down")
                }
            }
        }
    }

    func logMemorySummary() {
        for line in memory.summary { Log.info(line) }
    }

    private var lastExitCounts: [UInt64] = []

    private func probeIdleVcpus() {
        let counts = vcpus.map(\.exitCount)
        if counts.count == lastExitCounts.count {
            for (vcpu, previous) in zip(vcpus, lastExitCounts) { vcpu.probeForHalt(previousExitCount: previous) }
        }
        lastExitCounts = counts
    }
}
