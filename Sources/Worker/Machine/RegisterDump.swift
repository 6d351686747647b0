import CKVM

/// A vCPU's registers as text, printed when the VM dies so the cause can be found
/// (QEMU prints the same on a triple fault or emulation failure).
enum RegisterDump {
    static func lines(vcpu: VcpuFd, memory: GuestMemory) -> [String] {
        guard let r = try? vcpu.getRegisters(), let s = try? vcpu.getSpecialRegisters() else {
            return ["(registers unavailable)"]
        }
        func hex(_ v: UInt64) -> String {
            let digits = String(v, radix: 16)
            return String(repeating: "0", count: max(0, 16 - digits.count)) + digits
        }
        var lines = [
            "RAX=\(hex(r.rax)) RBX=\(hex(r.rbx)) RCX=\(hex(r.rcx)) RDX=\(hex(r.rdx))",
            "RSI=\(hex(r.rsi)) RDI=\(hex(r.rdi)) RBP=\(hex(r.rbp)) RSP=\(hex(r.rsp))",
            "R8 =\(hex(r.r8)) R9 =\(hex(r.r9)) R10=\(hex(r.r10)) R11=\(hex(r.r11))",
            "R12=\(hex(r.r12)) R13=\(hex(r.r13)) R14=\(hex(r.r14)) R15=\(hex(r.r15))",
            "RIP=\(hex(r.rip)) RFL=\(hex(r.rflags)) CPL=\(s.cs.dpl)",
            "CS=\(String(s.cs.selector, radix: 16)) base \(hex(s.cs.base)) SS=\(String(s.ss.selector, radix: 16)) CR0=\(hex(s.cr0)) CR3=\(hex(s.cr3)) CR4=\(hex(s.cr4)) EFER=\(hex(s.efer))",
        ]
        // The top of the stack usually holds an exception frame (vector, error code, RIP, ...).
        if s.cs.l == 1, s.cr0 & 0x8000_0000 != 0,
           let stack = try? memory.read(at: GuestAddress(r.rsp), count: 48) {
            let words = stride(from: 0, to: 48, by: 8).map { offset in
                stack[offset..<offset + 8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * $1.offset) }
            }
            lines.append("stack: " + words.map(hex).joined(separator: " "))
        }
        return lines
    }
}
