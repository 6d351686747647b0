import CKVM
import Shared

/// A saved XSAVE area, made acceptable to this host's KVM.
///
/// KVM_GET_XSAVE reports components in the header's XSTATE_BV that the guest never enabled
/// (a kernel with protection keys lists PKRU there, in its init state, whatever the guest's
/// CPUID says), and KVM_SET_XSAVE refuses with EINVAL any component the vCPU does not have.
/// A state saved on a host with PKU would then not load on one without (this happened with
/// the committed fixture on AMD EPYC hosts without PKU). cprvmm's guests have x87 and SSE only
/// (GuestCPUID hides XSAVE), so any other component must be in its init state — all zero
/// (Intel SDM vol. 1, 13.6: every extended component's init value is 0) — and its bit can be
/// cleared without changing the guest's state. A component that holds data cannot be dropped:
/// that state is refused, naming the components.
enum XSaveArea {
    /// The components every vCPU of cprvmm has: x87 and SSE (the legacy region).
    static let guestFeatures: UInt64 = 0x3
    /// Where the XSAVE header and the extended region begin in the standard (non-compacted)
    /// format that KVM_GET_XSAVE uses.
    static let headerOffset = 512
    static let extendedOffset = 576
    static let size = MemoryLayout<ckvm_xsave>.size

    /// XSTATE_BV (the components present), from the header.
    static func features(_ area: ckvm_xsave) -> UInt64 {
        withUnsafeBytes(of: area) { $0.loadUnaligned(fromByteOffset: headerOffset, as: UInt64.self) }
    }

    /// The area with components beyond `guestFeatures` removed from XSTATE_BV, or an error
    /// when one of them holds data (a guest that used them cannot move here).
    static func adapted(_ area: ckvm_xsave) throws -> ckvm_xsave {
        let extra = features(area) & ~guestFeatures
        guard extra != 0 else { return area }
        let extendedIsEmpty = withUnsafeBytes(of: area) { bytes in
            bytes[extendedOffset..<size].allSatisfy { $0 == 0 }
        }
        guard extendedIsEmpty else {
            throw ConfigurationError(
                "the saved vCPU state holds data in XSAVE components 0x\(String(extra, radix: 16)) (\(names(extra))), which a cprvmm guest cannot have; the state is damaged or was not saved by cprvmm")
        }
        var copy = area
        withUnsafeMutableBytes(of: &copy) { bytes in
            bytes.storeBytes(of: features(area) & guestFeatures, toByteOffset: headerOffset, as: UInt64.self)
        }
        return copy
    }

    /// The architectural names of XSAVE components (Intel SDM vol. 1, 13.1).
    static func names(_ mask: UInt64) -> String {
        let known: [Int: String] = [
            0: "x87", 1: "SSE", 2: "AVX", 3: "MPX BNDREGS", 4: "MPX BNDCSR", 5: "AVX-512 opmask", 6: "AVX-512 ZMM_Hi256",
            7: "AVX-512 Hi16_ZMM", 8: "PT", 9: "PKRU", 11: "CET user", 12: "CET supervisor", 17: "AMX TILECFG", 18: "AMX TILEDATA",
        ]
        return (0..<64).filter { mask & (1 << UInt64($0)) != 0 }.map { known[$0] ?? "component \($0)" }.joined(separator: ", ")
    }
}
