import CKVM
import Shared

/// The CPU the guest was shown: every vCPU's CPUID table and the TSC frequency. It travels
/// with the state, and the target sets the same tables instead of computing its own, so
/// neither a new build nor another host changes the CPU under a running guest. A target
/// that cannot show that CPU (another vendor, a feature its KVM lacks) or runs the TSC at
/// another rate (no TSC scaling here: docs/platform.md) refuses the state, naming what
/// differs; `-machine x-allow-tsc-mismatch=on` accepts another TSC rate.
struct CPUIDState: Equatable {
    static let sectionName = "cpuid"
    static let sectionVersion: UInt32 = 1
    static let maxEntries = 256
    /// KVM's own tolerance for TSC rates (its tsc_tolerance_ppm): closer than this, a host
    /// runs the TSC "at the same rate" and needs no scaling.
    static let tscTolerancePPM: UInt64 = 250

    struct Entry: Equatable {
        var function: UInt32, index: UInt32, flags: UInt32
        var eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32

        init(_ entry: kvm_cpuid_entry2) {
            function = entry.function; index = entry.index; flags = entry.flags
            eax = entry.eax; ebx = entry.ebx; ecx = entry.ecx; edx = entry.edx
        }

        init(function: UInt32, index: UInt32 = 0, flags: UInt32 = 0, eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0) {
            self.function = function; self.index = index; self.flags = flags
            self.eax = eax; self.ebx = ebx; self.ecx = ecx; self.edx = edx
        }

        var kvm: kvm_cpuid_entry2 {
            var entry = kvm_cpuid_entry2()
            entry.function = function; entry.index = index; entry.flags = flags
            entry.eax = eax; entry.ebx = ebx; entry.ecx = ecx; entry.edx = edx
            return entry
        }
    }

    var tscKHz: UInt64
    /// One table per vCPU.
    var vcpus: [[Entry]]

    func encode() -> [UInt8] {
        var encoder = StateEncoder()
        encoder.u64(tscKHz)
        encoder.u32(UInt32(vcpus.count))
        for table in vcpus {
            encoder.u32(UInt32(table.count))
            for entry in table {
                for word in [entry.function, entry.index, entry.flags, entry.eax, entry.ebx, entry.ecx, entry.edx] { encoder.u32(word) }
            }
        }
        return encoder.bytes
    }

    static func decode(_ section: StateSection, vcpuLimit: Int) throws -> CPUIDState {
        guard section.version == sectionVersion else {
            throw StateFormatError.malformed("section '\(section.name)' has version \(section.version); this cprvmm reads version \(sectionVersion)")
        }
        var decoder = StateDecoder(section.payload, section: section.name)
        let tscKHz = try decoder.u64()
        let count = Int(try decoder.u32())
        guard count <= vcpuLimit else { throw StateFormatError.malformed("section 'cpuid': \(count) CPUID tables for \(vcpuLimit) vCPUs") }
        var vcpus: [[Entry]] = []
        for _ in 0..<count {
            let entries = Int(try decoder.u32())
            guard entries <= maxEntries else { throw StateFormatError.malformed("section 'cpuid': \(entries) CPUID entries is absurd") }
            vcpus.append(try (0..<entries).map { _ in
                Entry(function: try decoder.u32(), index: try decoder.u32(), flags: try decoder.u32(),
                      eax: try decoder.u32(), ebx: try decoder.u32(), ecx: try decoder.u32(), edx: try decoder.u32())
            })
        }
        try decoder.finish()
        return CPUIDState(tscKHz: tscKHz, vcpus: vcpus)
    }

    /// The feature registers checked against the target: (leaf, subleaf, register, name of each bit).
    static let featureRegisters: [(function: UInt32, index: UInt32, register: KeyPath<Entry, UInt32>, label: String)] = [
        (1, 0, \.ecx, "CPUID 1 ECX"), (1, 0, \.edx, "CPUID 1 EDX"),
        (7, 0, \.ebx, "CPUID 7 EBX"), (7, 0, \.ecx, "CPUID 7 ECX"), (7, 0, \.edx, "CPUID 7 EDX"),
        (0x8000_0001, 0, \.ecx, "CPUID 0x80000001 ECX"), (0x8000_0001, 0, \.edx, "CPUID 0x80000001 EDX"),
    ]

    /// Names of the features guests care about most, by (register label, bit).
    static let featureNames: [String: String] = [
        "CPUID 1 ECX 0": "SSE3", "CPUID 1 ECX 9": "SSSE3", "CPUID 1 ECX 19": "SSE4.1", "CPUID 1 ECX 20": "SSE4.2",
        "CPUID 1 ECX 25": "AES", "CPUID 1 ECX 28": "AVX", "CPUID 1 ECX 30": "RDRAND", "CPUID 1 ECX 1": "PCLMULQDQ",
        "CPUID 1 ECX 12": "FMA", "CPUID 1 ECX 22": "MOVBE", "CPUID 1 ECX 24": "TSC-DEADLINE",
        "CPUID 7 EBX 3": "BMI1", "CPUID 7 EBX 5": "AVX2", "CPUID 7 EBX 8": "BMI2", "CPUID 7 EBX 16": "AVX512F",
        "CPUID 7 EBX 18": "RDSEED", "CPUID 7 EBX 19": "ADX", "CPUID 7 EBX 29": "SHA", "CPUID 7 ECX 3": "PKU",
        "CPUID 7 ECX 4": "OSPKE", "CPUID 0x80000001 EDX 27": "RDTSCP", "CPUID 0x80000001 ECX 5": "LZCNT",
    ]

    /// Why this host cannot show the guest the CPU it saw, or nil. `host` holds the tables
    /// this host would give each vCPU (GuestCPUID), `hostTSCKHz` its TSC rate.
    func mismatch(host: [[Entry]], hostTSCKHz: UInt64, allowTSCMismatch: Bool) -> String? {
        guard vcpus.count == host.count else { return "the state has CPUID for \(vcpus.count) vCPUs, this VM has \(host.count)" }
        func vendor(_ table: [Entry]) -> String {
            guard let leaf = table.first(where: { $0.function == 0 }) else { return "?" }
            let bytes = [leaf.ebx, leaf.edx, leaf.ecx].flatMap { word in (0..<4).map { UInt8(truncatingIfNeeded: word >> (8 * $0)) } }
            return String(decoding: bytes, as: UTF8.self)
        }
        if let saved = vcpus.first, let mine = host.first, vendor(saved) != vendor(mine) {
            return "the guest saw a \(vendor(saved)) CPU, this host is \(vendor(mine)) (migrate between hosts of one vendor)"
        }
        for (saved, mine) in zip(vcpus, host) {
            var missing: [String] = []
            for feature in CPUIDState.featureRegisters {
                guard let theirs = saved.first(where: { $0.function == feature.function && $0.index == feature.index }) else { continue }
                let ours = mine.first(where: { $0.function == feature.function && $0.index == feature.index })
                let lacking = theirs[keyPath: feature.register] & ~(ours?[keyPath: feature.register] ?? 0)
                for bit in 0..<32 where lacking & (1 << UInt32(bit)) != 0 {
                    let key = "\(feature.label) \(bit)"
                    missing.append(CPUIDState.featureNames[key] ?? "\(feature.label) bit \(bit)")
                }
            }
            if !missing.isEmpty {
                return "the guest uses CPU features this host's KVM cannot give it: \(missing.joined(separator: ", "))"
            }
        }
        let difference = tscKHz > hostTSCKHz ? tscKHz - hostTSCKHz : hostTSCKHz - tscKHz
        if tscKHz > 0, difference * 1_000_000 > hostTSCKHz * CPUIDState.tscTolerancePPM, !allowTSCMismatch {
            return "the guest's TSC ran at \(tscKHz) kHz, this host's runs at \(hostTSCKHz) kHz and KVM here cannot scale it (the guest's clock would change rate; start the target with -machine x-allow-tsc-mismatch=on to accept that)"
        }
        return nil
    }
}
