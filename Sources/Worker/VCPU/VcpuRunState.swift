/// The run state machine of one vCPU thread (Firecracker's running / paused / finished).
/// The machine *requests* a state; the thread *acknowledges* it once it holds: a vCPU is
/// acknowledged paused only when it is outside KVM_RUN, so its state may be read or saved.
enum VcpuRunState: Equatable {
    case running
    case paused
    /// The thread has left its loop (machine ending, or the vCPU hit a fatal condition).
    case stopped
}

/// What the vCPU thread does after handing an exit to the machine.
enum VcpuExitAction {
    case resume
    /// Park this vCPU (fatal error, machine ending); the machine decides what happens next.
    case park
}

/// The machine's side of a vCPU thread: device dispatch and fatal-condition reports.
protocol VcpuExitHandler: AnyObject {
    func handle(_ exit: VcpuExit, on vcpu: VcpuFd) -> VcpuExitAction
    /// The vCPU sits in HLT with interrupts disabled: nothing can ever wake it.
    func vcpuHaltedForever(_ vcpu: VcpuFd)
    func vcpuFailed(_ vcpu: VcpuFd, error: SystemError)
}
