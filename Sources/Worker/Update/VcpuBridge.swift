import CBridge
import CKVM
import CLinux
import Glibc
import Shared

/// The guest keeps running while a live update execs and the new image builds its VM
/// (cbridge.h has the mechanism). The old image hands each paused vCPU to a bridge task,
/// which runs it on; the new image, once its VM is ready and the device state loaded, stops
/// the bridges, serves the exit each one stopped at, and restores the state they dump. The
/// guest pause is that handover, whatever the exec and the VM creation cost.
///
/// Devices live in the images. While the old image's devices are frozen (saved, and nothing
/// runs them until the handover), a bridge serves only what cannot change them: reads with no
/// side effect get the value the device would give, and writes that leave its state as it is
/// (a UART's THR) are logged for the new image to perform. At any other exit that vCPU waits
/// for the handover, and the new image serves the exit as its own vCPU thread would.
final class VcpuBridge {
    /// The handover name of the memfd holding the shared region.
    static let handoverName = "vcpu-bridge"
    /// A state-stream section saying that vCPU and platform state come through the bridge.
    /// An image that predates bridges rejects the stream ("unknown section") and rolls back,
    /// instead of resuming a stale vCPU state while the guest runs on elsewhere.
    static let sectionName = "vcpu-bridge"
    static let sectionVersion: UInt32 = 1
    /// How long a bridge may take to stop, serve-complete and dump before the update fails.
    static let handoverTimeoutNanoseconds: UInt64 = 2_000_000_000

    let fd: Int32
    private let region: UnsafeMutablePointer<cbridge>
    private let size: Int
    /// The bridge tasks this image spawned (old image): the CPR state lists them with the
    /// teardown holders, so that whichever image runs the VM afterwards reaps them.
    private(set) var pids: [Int32] = []
    /// Their stacks, in this image's address space.
    private var stacks: [Int32: UnsafeMutableRawPointer] = [:]
    /// False once `retire` handed the mapping to the tasks' reaping.
    private var ownsMapping = true

    private init(fd: Int32, region: UnsafeMutablePointer<cbridge>, size: Int) {
        self.fd = fd
        self.region = region
        self.size = size
    }

    deinit { if ownsMapping { munmap(region, size) } }

    var vcpuCount: Int { Int(region.pointee.vcpu_count) }

    /// When the guest ran again after the old image's short pause: the last bridge to enter
    /// KVM_RUN (waking a bridge can take a while on a busy host), or the run command.
    var guestResumedNanoseconds: UInt64 {
        (0..<vcpuCount).map { vcpu($0).pointee.running_ns }.max().map { max($0, region.pointee.guest_resumed_ns) }
            ?? region.pointee.guest_resumed_ns
    }

    /// When the first vCPU stopped at an exit only an image could serve (the guest, or part of
    /// it, waited from then on), if one did.
    var firstStallNanoseconds: UInt64? {
        (0..<vcpuCount).compactMap { index -> UInt64? in
            let stall = vcpu(index).pointee.stall_ns
            return stall > 0 ? stall : nil
        }.min()
    }

    private func vcpu(_ index: Int) -> UnsafeMutablePointer<cbridge_vcpu> {
        cbridge_vcpu_at(region, UInt32(index))
    }

    // MARK: Old image

    /// Sets up the region and one bridge per vCPU, holding: nothing changes for the guest
    /// yet. Runs before the pause (spawning a task costs 50-100 µs). The port table waits for
    /// `run`, after the pause.
    static func prepare(machine: Machine) throws -> VcpuBridge {
        try machine.cacheMSRIndexList()
        let msrs = machine.msrIndexList ?? []
        guard msrs.count <= Int(CBRIDGE_MAX_MSRS) else {
            throw ConfigurationError("KVM lists \(msrs.count) MSRs; a vCPU bridge carries at most \(CBRIDGE_MAX_MSRS)")
        }
        let count = machine.vcpus.count
        let size = cbridge_size(UInt32(count))
        let fd = clinux_memfd_create("cprvmm-vcpu-bridge", CLINUX_MFD_CLOEXEC)
        guard fd >= 0 else { throw SystemError("memfd_create for the vCPU bridge", errno: -fd) }
        guard ftruncate(fd, off_t(size)) == 0 else {
            let code = errno
            close(fd)
            throw SystemError("ftruncate of the vCPU bridge memfd", errno: code)
        }
        let bridge = try map(fd: fd, size: size)
        let header = bridge.region
        header.pointee.magic = CBRIDGE_MAGIC
        header.pointee.version = CBRIDGE_VERSION
        header.pointee.size = UInt32(size)
        header.pointee.vcpu_count = UInt32(count)
        header.pointee.vm_fd = machine.vm.fd
        header.pointee.parent_pid = getpid()
        header.pointee.msr_count = UInt32(msrs.count)
        let indices = (UnsafeMutableRawPointer(header) + MemoryLayout<cbridge>.offset(of: \cbridge.msr_indices)!)
            .assumingMemoryBound(to: UInt32.self)
        for (i, index) in msrs.enumerated() { indices[i] = index }
        header.pointee.port_count = 0
        for (index, thread) in machine.vcpus.enumerated() {
            let slot = bridge.vcpu(index)
            slot.pointee.vcpu_fd = thread.vcpu.fd
            slot.pointee.run_page = UInt64(UInt(bitPattern: thread.vcpu.runPage))
            var stack: UnsafeMutableRawPointer?
            let pid = cbridge_spawn(header, UInt32(index), &stack)
            guard pid > 0 else {
                bridge.retire(into: machine.updateTasks)
                throw SystemError("clone of the vCPU bridge task", errno: -pid)
            }
            slot.pointee.pid = pid
            bridge.pids.append(pid)
            bridge.stacks[pid] = stack
        }
        return bridge
    }

    /// The vCPU threads are paused and the devices saved (frozen until the handover): fills in
    /// what the bridges may serve at the ports on their own, and lets them run the guest.
    func run(ports: [(port: UInt16, access: PortBridgeAccess)]) {
        let table = (UnsafeMutableRawPointer(region) + MemoryLayout<cbridge>.offset(of: \cbridge.ports)!)
            .assumingMemoryBound(to: cbridge_port.self)
        let served = ports.prefix(Int(CBRIDGE_MAX_PORTS))
        for (i, entry) in served.enumerated() {
            var flags: UInt8 = entry.access.writeLogged ? UInt8(CBRIDGE_PORT_WRITE_LOGGED) : 0
            if entry.access.constantRead != nil { flags |= UInt8(CBRIDGE_PORT_READ_CONSTANT) }
            table[i] = cbridge_port(port: entry.port, flags: flags, read_value: entry.access.constantRead ?? 0)
        }
        region.pointee.port_count = UInt32(served.count)
        region.pointee.guest_resumed_ns = monotonicNanoseconds()
        // Sequentially consistent store and wake: the table is visible before the command.
        cbridge_command(region, UInt32(CBRIDGE_RUN))
    }

    /// New image: ends the bridges, which run in the old image's address space (they exit once
    /// they see the command; the CPR state listed them for reaping).
    func release() {
        cbridge_command(region, UInt32(CBRIDGE_EXIT))
    }

    /// The image that spawned the bridges keeps the VM (a failed exec, a refused update): ends
    /// them and hands them to `tasks` for reaping. Their stacks and the region stay mapped
    /// until every one of them is gone: they may still be reading it.
    func retire(into tasks: UpdateTasks) {
        cbridge_command(region, UInt32(CBRIDGE_EXIT))
        close(fd)
        for pid in pids { tasks.add(pid, stack: stacks[pid]) }
        stacks = [:]
        ownsMapping = false
        let (region, size) = (region, size)
        tasks.whenExited(pids) { munmap(region, size) }
    }

    // MARK: New image (or the old one, after a failed exec)

    /// The region a previous image handed over.
    static func attach(fd: Int32) throws -> VcpuBridge {
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw SystemError("fstat of the vCPU bridge memfd", errno: errno) }
        guard status.st_size >= MemoryLayout<cbridge>.size else {
            throw StateFormatError.malformed("the vCPU bridge region is \(status.st_size) bytes, too short")
        }
        let bridge = try map(fd: fd, size: Int(status.st_size))
        // Field by field: the region is large (the write log), and copying it costs page faults.
        let header = bridge.region
        guard header.pointee.magic == CBRIDGE_MAGIC, header.pointee.version == CBRIDGE_VERSION else {
            throw StateFormatError.malformed("the vCPU bridge region has version \(header.pointee.version) (magic 0x\(String(header.pointee.magic, radix: 16))); this cprvmm reads version \(CBRIDGE_VERSION)")
        }
        guard Int(header.pointee.size) == Int(status.st_size), Int(header.pointee.size) == cbridge_size(header.pointee.vcpu_count),
              header.pointee.msr_count <= UInt32(CBRIDGE_MAX_MSRS) else {
            throw StateFormatError.malformed("the vCPU bridge region's layout does not match this cprvmm's (\(header.pointee.size) bytes for \(header.pointee.vcpu_count) vCPUs)")
        }
        return bridge
    }

    struct TakenOver {
        var vcpus: [VcpuState]
        var platform: PlatformState
        /// Exits that end the guest (triple fault, emulation failure): for the new vCPU thread's
        /// handler once the state is restored, so that its diagnosis shows the right registers.
        var fatalExits: [(vcpu: Int, exit: VcpuExit)]
    }

    /// Stops every bridge, serves the exit each stopped at with `machine`'s devices, and
    /// returns the vCPU and platform state they dump. The guest is paused from here on.
    func takeOver(machine: Machine, kick: Bool = true) throws -> TakenOver {
        guard vcpuCount == machine.vcpus.count else {
            throw ConfigurationError("the vCPU bridge holds \(vcpuCount) vCPUs, this VM has \(machine.vcpus.count)")
        }
        cbridge_command(region, UInt32(CBRIDGE_STOP))
        if kick {
            for index in 0..<vcpuCount where vcpu(index).pointee.pid > 0 { kill(vcpu(index).pointee.pid, VcpuThread.kickSignal) }
        }
        var fatalExits: [(vcpu: Int, exit: VcpuExit)] = []
        for index in 0..<vcpuCount {
            let slot = vcpu(index)
            var state = cbridge_load(&slot.pointee.state)
            while state == CBRIDGE_STARTING || state == CBRIDGE_RUNNING {
                let before = state
                state = cbridge_wait_change(&slot.pointee.state, before, VcpuBridge.handoverTimeoutNanoseconds)
                if state == before { throw ConfigurationError("the bridge running vCPU \(index) did not stop within 2 s (pid \(slot.pointee.pid))") }
            }
        }
        // Every bridge is out of KVM_RUN: the writes they logged happened before the exits
        // they stopped at, so they go to the devices first.
        replayLog(machine: machine)
        for index in 0..<vcpuCount {
            let slot = vcpu(index)
            guard slot.pointee.has_exit != 0, let exit = pendingExit(slot) else { continue }
            switch exit {
            case .ioIn, .ioOut, .mmioRead, .mmioWrite:
                // Served once: a rollback image that takes over again finds it done.
                if cbridge_load(&slot.pointee.served) == 0 {
                    _ = machine.handle(exit, on: machine.vcpus[index].vcpu)
                    cbridge_store_wake(&slot.pointee.served, 1)
                }
            default:
                fatalExits.append((index, exit))
            }
        }
        var vcpus: [VcpuState] = []
        for index in 0..<vcpuCount {
            let slot = vcpu(index)
            var state = cbridge_load(&slot.pointee.state)
            if state == CBRIDGE_STOPPED {
                state = cbridge_wait_change(&slot.pointee.state, state, VcpuBridge.handoverTimeoutNanoseconds)
            }
            guard state == CBRIDGE_DUMPED else {
                if state == CBRIDGE_FAILED { throw failure(slot, index: index) }
                throw ConfigurationError("the bridge running vCPU \(index) did not hand over its state within 2 s")
            }
            vcpus.append(dumpedState(slot))
        }
        var platformState = cbridge_load(&region.pointee.platform_state)
        if platformState == 0 {
            platformState = cbridge_wait_change(&region.pointee.platform_state, 0, VcpuBridge.handoverTimeoutNanoseconds)
        }
        guard platformState == CBRIDGE_DUMPED else {
            throw SystemError("the vCPU bridge reading the interrupt controllers, PIT and clock", errno: -region.pointee.platform_error)
        }
        let platform = PlatformState(
            irqchips: [region.pointee.irqchips.0, region.pointee.irqchips.1, region.pointee.irqchips.2],
            pit: region.pointee.pit, clockNanoseconds: region.pointee.clock.clock)
        return TakenOver(vcpus: vcpus, platform: platform, fatalExits: fatalExits)
    }

    /// Performs the port writes the bridges logged, once (a rollback image finds them done).
    private func replayLog(machine: Machine) {
        let log = UnsafeRawPointer(cbridge_log(region)!)
        let used = Int(min(cbridge_load(&region.pointee.log_used), UInt32(CBRIDGE_LOG_SIZE)))
        var offset = Int(region.pointee.log_replayed)
        let headerSize = MemoryLayout<cbridge_log_entry>.size
        while offset + headerSize <= used {
            let entry = log.loadUnaligned(fromByteOffset: offset, as: cbridge_log_entry.self)
            let length = Int(entry.size) * Int(entry.count)
            guard entry.size > 0, offset + headerSize + length <= used else { break }
            let data = UnsafeRawBufferPointer(start: log + offset + headerSize, count: length)
            _ = machine.handle(.ioOut(port: entry.port, size: Int(entry.size), count: Int(entry.count), data: data), on: machine.vcpus[0].vcpu)
            offset += headerSize + ((length + 7) & ~7)
        }
        region.pointee.log_replayed = UInt32(used)
    }

    /// The exit the bridge stopped at, its data buffers pointing into the region. Fields are
    /// read one by one (`slot.pointee.x`): a copy of the whole slot would be 13 KiB.
    private func pendingExit(_ slot: UnsafeMutablePointer<cbridge_vcpu>) -> VcpuExit? {
        let data = UnsafeMutableRawPointer(slot) + MemoryLayout<cbridge_vcpu>.offset(of: \cbridge_vcpu.data)!
        switch slot.pointee.exit_reason {
        case CKVM_EXIT_IO:
            let port = slot.pointee.io_port, size = Int(slot.pointee.io_size)
            let length = min(size * Int(slot.pointee.io_count), Int(CBRIDGE_EXIT_DATA))
            let buffer = UnsafeMutableRawBufferPointer(start: data, count: length)
            let count = length / max(1, size)
            if slot.pointee.io_direction == CKVM_EXIT_IO_OUT {
                return .ioOut(port: port, size: size, count: count, data: UnsafeRawBufferPointer(buffer))
            }
            return .ioIn(port: port, size: size, count: count, data: buffer)
        case CKVM_EXIT_MMIO:
            let address = slot.pointee.mmio_address
            let buffer = UnsafeMutableRawBufferPointer(start: data, count: min(Int(slot.pointee.mmio_length), 8))
            return slot.pointee.mmio_is_write != 0
                ? .mmioWrite(address: address, data: UnsafeRawBufferPointer(buffer)) : .mmioRead(address: address, data: buffer)
        case CKVM_EXIT_HLT: return .hlt
        case CKVM_EXIT_SHUTDOWN: return .shutdown
        case CKVM_EXIT_INTERNAL_ERROR: return .internalError(suberror: 0)
        case CKVM_EXIT_FAIL_ENTRY: return .failEntry(hardwareReason: 0)
        case let reason: return .unknown(reason: reason)
        }
    }

    private func dumpedState(_ slot: UnsafeMutablePointer<cbridge_vcpu>) -> VcpuState {
        let offset = MemoryLayout<cbridge_vcpu>.offset(of: \cbridge_vcpu.msrs)! + MemoryLayout<cbridge_msrs>.offset(of: \cbridge_msrs.entries)!
        let entries = (UnsafeRawPointer(slot) + offset).assumingMemoryBound(to: kvm_msr_entry.self)
        var msrs: [(index: UInt32, value: UInt64)] = []
        for i in 0..<Int(min(slot.pointee.msrs.nmsrs, UInt32(CBRIDGE_MAX_MSRS))) { msrs.append((entries[i].index, entries[i].data)) }
        return VcpuState(
            regs: slot.pointee.regs, sregs: slot.pointee.sregs, xsave: slot.pointee.xsave, xcrs: slot.pointee.xcrs,
            msrs: msrs, lapic: slot.pointee.lapic, events: slot.pointee.events, debugRegisters: slot.pointee.debugregs,
            mpState: slot.pointee.mp_state.mp_state)
    }

    private func failure(_ slot: UnsafeMutablePointer<cbridge_vcpu>, index: Int) -> SystemError {
        let steps: [Int: String] = [
            Int(CBRIDGE_STEP_SIGNAL_MASK): "KVM_SET_SIGNAL_MASK", Int(CBRIDGE_STEP_RUN): "KVM_RUN",
            Int(CBRIDGE_STEP_COMPLETE): "KVM_RUN (completing an exit)", Int(CBRIDGE_STEP_REGS): "KVM_GET_REGS",
            Int(CBRIDGE_STEP_SREGS): "KVM_GET_SREGS", Int(CBRIDGE_STEP_XSAVE): "KVM_GET_XSAVE",
            Int(CBRIDGE_STEP_XCRS): "KVM_GET_XCRS", Int(CBRIDGE_STEP_MSRS): "KVM_GET_MSRS",
            Int(CBRIDGE_STEP_LAPIC): "KVM_GET_LAPIC", Int(CBRIDGE_STEP_EVENTS): "KVM_GET_VCPU_EVENTS",
            Int(CBRIDGE_STEP_DEBUGREGS): "KVM_GET_DEBUGREGS", Int(CBRIDGE_STEP_MP_STATE): "KVM_GET_MP_STATE",
        ]
        let step = steps[Int(slot.pointee.error_step)] ?? "step \(slot.pointee.error_step)"
        return SystemError("the bridge running vCPU \(index): \(step)", errno: -slot.pointee.error)
    }

    private static func map(fd: Int32, size: Int) throws -> VcpuBridge {
        let mapping = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let mapping, mapping != MAP_FAILED else { throw SystemError("mmap of the vCPU bridge memfd", errno: errno) }
        return VcpuBridge(fd: fd, region: mapping.bindMemory(to: cbridge.self, capacity: 1), size: size)
    }
}
