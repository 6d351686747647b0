import CKVM

/// The CPUID a vCPU reports: what KVM supports, minus features this host cannot run for a
/// guest (docs/platform.md: KVM's emulator fails on CMPXCHG16B, XSAVE, POPCNT at CPL0),
/// with the vCPU's own APIC id.
enum GuestCPUID {
    static func entries(supported: [kvm_cpuid_entry2], vcpu: Int) -> [kvm_cpuid_entry2] {
        supported.compactMap { original in
            var entry = original
            switch entry.function {
            case 1:
                let hidden: UInt32 = (1 << 13) | (1 << 23) | (1 << 26) | (1 << 27)  // CX16, POPCNT, XSAVE, OSXSAVE
                entry.ecx &= ~hidden
                entry.ecx |= 1 << 31  // running under a hypervisor
                entry.ebx = (entry.ebx & 0x00FF_FFFF) | (UInt32(vcpu) << 24)
            case 0xB, 0x1F:
                entry.edx = UInt32(vcpu)  // x2APIC id
            case 0xD:
                return nil  // no XSAVE state components without XSAVE
            default:
                break
            }
            return entry
        }
    }
}
