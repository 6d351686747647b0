/// How vCPUs start: at the x86 reset vector (firmware), or directly in 64-bit mode.
enum BootEntry: Equatable {
    /// KVM's reset state: real mode at 0xFFFF_FFF0; secondary vCPUs wait for INIT/SIPI.
    case resetVector
    /// Every vCPU starts at `rip` in 64-bit mode, RDI = boot info, RSI = vCPU index.
    /// `userMode`: CPL 3 with IOPL 3 (the built-in guest); otherwise CPL 0 (`-kernel`).
    case longMode(rip: UInt64, userMode: Bool, withIDT: Bool)
}
