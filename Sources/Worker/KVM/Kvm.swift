import CKVM
import Glibc

/// Why the VMM cannot use KVM on this host; each message names the cause and a fix.
public enum KvmUnavailable: Error, CustomStringConvertible {
    case cannotOpen(path: String, errno: Int32)
    case notKVM(path: String, errno: Int32)
    case wrongAPIVersion(Int32)
    case missingCapability(name: String, purpose: String)
    case failed(SystemError)

    public var description: String {
        switch self {
        case .cannotOpen(let path, ENOENT):
            return "cannot open \(path): no such device file (load the kvm module, or run on a host with hardware virtualisation)"
        case .cannotOpen(let path, let code) where code == EACCES || code == EPERM:
            return "cannot open \(path): permission denied (run as root or add the user to the kvm group)"
        case .cannotOpen(let path, let code):
            return "cannot open \(path): \(SystemError.describe(code))"
        case .notKVM(let path, let code):
            return "\(path) is not a KVM device (KVM_GET_API_VERSION: \(SystemError.describe(code)))"
        case .wrongAPIVersion(let version):
            return "KVM API version \(version) is not supported (cprvmm needs \(CKVM_API_VERSION))"
        case .missingCapability(let name, let purpose):
            return "KVM lacks \(name), which cprvmm needs for \(purpose)"
        case .failed(let error):
            return error.description
        }
    }
}

/// The KVM system object (/dev/kvm): capability queries and VM creation.
public final class Kvm {
    public static let devicePath = "/dev/kvm"

    /// Every capability the VMM relies on, with what it is for (named in the error if absent).
    static let requiredCapabilities: [(Int32, String, String)] = [
        (CKVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY", "guest RAM in host memory"),
        (CKVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP", "the in-kernel interrupt controllers"),
        (CKVM_CAP_PIT2, "KVM_CAP_PIT2", "the in-kernel timer"),
        (CKVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR", "real-mode firmware"),
        (CKVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR", "real-mode firmware"),
        (CKVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT", "pausing vCPUs without races"),
        (CKVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID", "the guest CPUID"),
        (CKVM_CAP_MP_STATE, "KVM_CAP_MP_STATE", "starting secondary vCPUs"),
        (CKVM_CAP_GET_TSC_KHZ, "KVM_CAP_GET_TSC_KHZ", "telling the guest its TSC frequency"),
        (CKVM_CAP_XSAVE, "KVM_CAP_XSAVE", "saving FPU/SSE state for migration and live update"),
        (CKVM_CAP_XCRS, "KVM_CAP_XCRS", "saving extended control registers for migration"),
        (CKVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS", "saving pending interrupts and exceptions for migration"),
        (CKVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS", "saving debug registers for migration"),
        (CKVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK", "keeping guest time continuous across migration"),
    ]

    let fd: Int32

    /// Opens /dev/kvm and checks the API version and every required capability.
    public init(path: String = Kvm.devicePath) throws(KvmUnavailable) {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotOpen(path: path, errno: errno) }
        // Checked before `self` owns the fd, so a failure closes it exactly once.
        if let problem = Kvm.unusable(fd: fd, path: path) {
            close(fd)
            throw problem
        }
        self.fd = fd
    }

    private static func unusable(fd: Int32, path: String) -> KvmUnavailable? {
        let version = ckvm_ioctl_value(fd, CKVM_GET_API_VERSION, 0)
        guard version >= 0 else { return .notKVM(path: path, errno: errno) }
        guard version == CKVM_API_VERSION else { return .wrongAPIVersion(version) }
        for (capability, name, purpose) in requiredCapabilities
        where ckvm_ioctl_value(fd, CKVM_CHECK_EXTENSION, UInt(capability)) <= 0 {
            return .missingCapability(name: name, purpose: purpose)
        }
        return nil
    }

    deinit { close(fd) }

    public func checkExtension(_ capability: Int32) -> Int32 {
        ckvm_ioctl_value(fd, CKVM_CHECK_EXTENSION, UInt(capability))
    }

    /// The most vCPUs a VM may have on this host.
    public var maxVcpus: Int {
        let max = checkExtension(CKVM_CAP_MAX_VCPUS)
        return Int(max > 0 ? max : checkExtension(CKVM_CAP_NR_VCPUS))
    }

    func vcpuMmapSize() throws(SystemError) -> Int {
        Int(try ioctlChecked(fd, CKVM_GET_VCPU_MMAP_SIZE, value: 0, "KVM_GET_VCPU_MMAP_SIZE"))
    }

    /// The CPUID leaves KVM can virtualise on this host.
    func supportedCPUID() throws(SystemError) -> [kvm_cpuid_entry2] {
        var table = ckvm_cpuid2()
        table.nent = CKVM_MAX_CPUID_ENTRIES
        try ioctlChecked(fd, CKVM_GET_SUPPORTED_CPUID, &table, "KVM_GET_SUPPORTED_CPUID")
        return withUnsafeBytes(of: &table.entries) { raw in
            Array(raw.bindMemory(to: kvm_cpuid_entry2.self).prefix(Int(table.nent)))
        }
    }

    /// The MSRs KVM can save and restore for a vCPU (KVM_GET_MSR_INDEX_LIST).
    func msrIndexList() throws(SystemError) -> [UInt32] {
        var list = ckvm_msr_list()
        list.nmsrs = 512
        try ioctlChecked(fd, CKVM_GET_MSR_INDEX_LIST, &list, "KVM_GET_MSR_INDEX_LIST")
        return withUnsafeBytes(of: &list.indices) { Array($0.bindMemory(to: UInt32.self).prefix(Int(list.nmsrs))) }
    }

    public func createVM() throws(SystemError) -> VmFd {
        let vmfd = try ioctlChecked(fd, CKVM_CREATE_VM, value: 0, "KVM_CREATE_VM")
        return VmFd(fd: vmfd, kvm: self)
    }
}
