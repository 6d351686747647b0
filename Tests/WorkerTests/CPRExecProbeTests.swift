import Shared
import Testing
@testable import Worker

/// The live update's probe: which answers from a new binary let the update go ahead.
@Suite struct CPRExecProbeTests {
    /// An answer like this build's, with the sections `without` left out.
    static func answer(without: Set<String>) -> [UInt8] {
        let sections = JSONObject(StateSections.readableVersions.filter { !without.contains($0.key) }.sorted { $0.key < $1.key }
            .map { ($0.key, JSONValue.array($0.value.map { .int(Int64($0)) })) })
        let cpr = JSONObject(StateSections.cprVersions.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.array([.int(Int64($0.value))])) })
        let answer: JSONObject = ["cprvmm-probe": .object([
            "version": .string("0.2.0"), "build-id": .string("x"),
            "state-format": .array(StateFormat.supportedVersions.map { .int(Int64($0)) }),
            "sections": .object(sections), "cpr-state": .object(cpr),
            "vcpu-bridge-region": .array([.int(Int64(StateSections.bridgeRegionVersion))]),
            "command-line-error": .null,
        ])]
        return Array(JSON.serialize(.object(answer)).utf8)
    }

    @Test("a binary that predates pre-copy (no ram.zero, no run-state) still takes a live update: a downgrade works")
    func olderBinaryWithoutPrecopySections() {
        let output = Self.answer(without: Set(StateSections.precopyVersions.keys))
        #expect(CPRExecProbe.refusal(program: "old", output: output, errors: [], waitStatus: 0, bridges: true) == nil)
    }

    @Test("a binary that cannot read a section a live update writes is refused, naming it")
    func missingLiveUpdateSection() {
        let output = Self.answer(without: [Machine.ramDataSection])
        let refusal = CPRExecProbe.refusal(program: "new", output: output, errors: [], waitStatus: 0, bridges: true) ?? ""
        #expect(refusal.contains("does not read section 'ram.data' version 1"), "\(refusal)")
    }
}
