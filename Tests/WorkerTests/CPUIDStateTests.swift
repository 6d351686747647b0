import Shared
import Testing

@testable import Worker

@Suite struct CPUIDStateTests {
    typealias Entry = CPUIDState.Entry
    /// "AuthenticAMD" in leaf 0's EBX, EDX, ECX.
    static let amd = Entry(function: 0, eax: 0x10, ebx: 0x6874_7541, ecx: 0x444D_4163, edx: 0x6974_6E65)
    static let intel = Entry(function: 0, eax: 0x10, ebx: 0x756E_6547, ecx: 0x6C65_746E, edx: 0x4965_6E69)

    static func table(vendor: Entry = amd, leaf7ebx: UInt32 = 1 << 5) -> [Entry] {
        [vendor, Entry(function: 1, ecx: 1 << 28, edx: 1 << 4), Entry(function: 7, ebx: leaf7ebx)]
    }

    @Test("the tables and the TSC rate round-trip")
    func roundTrip() throws {
        let state = CPUIDState(tscKHz: 2_596_000, vcpus: [Self.table(), Self.table()])
        let decoded = try CPUIDState.decode(StateSection(name: "cpuid", version: 1, payload: state.encode()), vcpuLimit: 2)
        #expect(decoded == state)
        #expect(throws: StateFormatError.self) { try CPUIDState.decode(StateSection(name: "cpuid", version: 1, payload: state.encode()), vcpuLimit: 1) }
        #expect(throws: StateFormatError.self) { try CPUIDState.decode(StateSection(name: "cpuid", version: 2, payload: state.encode()), vcpuLimit: 2) }
    }

    @Test("the same CPU on a host as capable, at the same TSC rate (within 250 ppm), is taken")
    func sameHost() {
        let state = CPUIDState(tscKHz: 2_596_000, vcpus: [Self.table(leaf7ebx: 1 << 5)])
        #expect(state.mismatch(host: [Self.table(leaf7ebx: 1 << 5 | 1 << 8)], hostTSCKHz: 2_596_400, allowTSCMismatch: false) == nil)
    }

    @Test("another vendor, a missing feature and another TSC rate are refused, naming the difference")
    func refusals() {
        let state = CPUIDState(tscKHz: 2_596_000, vcpus: [Self.table(leaf7ebx: 1 << 5 | 1 << 16)])
        let vendor = state.mismatch(host: [Self.table(vendor: Self.intel, leaf7ebx: 1 << 5 | 1 << 16)], hostTSCKHz: 2_596_000, allowTSCMismatch: false)
        #expect(vendor == "the guest saw a AuthenticAMD CPU, this host is GenuineIntel (migrate between hosts of one vendor)")
        let feature = state.mismatch(host: [Self.table(leaf7ebx: 1 << 5)], hostTSCKHz: 2_596_000, allowTSCMismatch: false)
        #expect(feature == "the guest uses CPU features this host's KVM cannot give it: AVX512F")
        var reserved = Self.table()
        reserved[1].edx |= 1 << 10
        let unnamed = CPUIDState(tscKHz: 2_596_000, vcpus: [reserved]).mismatch(host: [Self.table()], hostTSCKHz: 2_596_000, allowTSCMismatch: false)
        #expect(unnamed == "the guest uses CPU features this host's KVM cannot give it: CPUID 1 EDX bit 10")
        let tsc = CPUIDState(tscKHz: 2_100_000, vcpus: [Self.table()]).mismatch(host: [Self.table()], hostTSCKHz: 2_596_000, allowTSCMismatch: false)
        #expect(tsc?.hasPrefix("the guest's TSC ran at 2100000 kHz, this host's runs at 2596000 kHz") == true, "\(tsc ?? "nil")")
        #expect(CPUIDState(tscKHz: 2_100_000, vcpus: [Self.table()]).mismatch(host: [Self.table()], hostTSCKHz: 2_596_000, allowTSCMismatch: true) == nil)
    }
}
