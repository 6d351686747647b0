import CKVM

/// vCPU exits: device dispatch, and the conditions that end the VM with a diagnosis.
extension Machine: VcpuExitHandler {
    func handle(_ exit: VcpuExit, on vcpu: VcpuFd) -> VcpuExitAction {
        switch exit {
        case .ioOut(let port, let size, let count, let data):
            ports.write(port: port, size: size, count: count, data: data)
        case .ioIn(let port, let size, let count, let data):
            ports.read(port: port, size: size, count: count, data: data)
        case .mmioRead(let address, let data):
            mmio.read(address: address, data: data)
        case .mmioWrite(let address, let data):
            mmio.write(address: address, data: data)
        case .interrupted:
            break
        case .hlt:
            // Only reachable without an in-kernel LAPIC, which cprvmm always has.
            return fail(vcpu, "vCPU \(vcpu.index) executed HLT with no interrupt controller to wake it")
        case .shutdown:
            return fail(vcpu, "vCPU \(vcpu.index): guest triple fault or shutdown request")
        case .failEntry(let reason):
            return fail(vcpu, "vCPU \(vcpu.index): KVM could not enter the guest (hardware reason 0x\(String(reason, radix: 16)))")
        case .internalError(let suberror):
            let what = suberror == 1 ? "emulation failure (an instruction KVM cannot emulate)" : "KVM internal error \(suberror)"
            return fail(vcpu, "vCPU \(vcpu.index): \(what)")
        case .systemEvent(let type):
            return fail(vcpu, "vCPU \(vcpu.index): guest system event \(type) (reset/shutdown)")
        case .unknown(let reason):
            return fail(vcpu, "vCPU \(vcpu.index): unexpected KVM exit reason \(reason)")
        }
        return .resume
    }

    func vcpuHaltedForever(_ vcpu: VcpuFd) {
        _ = fail(vcpu, "vCPU \(vcpu.index) halted with interrupts disabled; stopping the VM")
    }

    func vcpuFailed(_ vcpu: VcpuFd, error: SystemError) {
        _ = fail(vcpu, "vCPU \(vcpu.index) failed: \(error)")
    }

    /// Prints the diagnosis and the vCPU's registers, and ends the VM with status 1.
    private func fail(_ vcpu: VcpuFd, _ message: String) -> VcpuExitAction {
        Log.error(message)
        for line in RegisterDump.lines(vcpu: vcpu, memory: memory.guest) { Log.error(line) }
        requestExit(status: 1, reason: nil, guest: true, cause: "guest-panic", state: .internalError)
        return .park
    }
}
