import Glibc
import Testing

@testable import Shared

/// The CPR state a live update hands from image to image (a memfd, two sections).
@Suite struct CPRStateTests {
    static func sample() -> CPRState {
        let image = CPRState.Image(path: "/usr/bin/cprvmm", version: "0.1.0", buildID: "abc")
        var state = CPRState(
            generation: 3, previousArguments: ["/usr/bin/cprvmm", "-m", "1G"], previous: image,
            startedMonotonicNanoseconds: 10, pausedMonotonicNanoseconds: 20, vmStarted: 1.5, history: [])
        state.fds = [.init(name: "ram:pc.ram", fd: 7)]
        state.history = [CPRState.Update(generation: 2, from: image, to: image, pauseMicroseconds: 3100, totalMicroseconds: 4000, result: "completed", time: 2.5)]
        return state
    }

    static func sections(_ fd: Int32) throws -> [StateSection] {
        #expect(lseek(fd, 0, SEEK_SET) == 0)
        let reader = try StateReader(source: FileDescriptorSource(fd: fd))
        var result: [StateSection] = []
        while let section = try reader.nextSection() { result.append(section) }
        return result
    }

    /// Every limit `validate` checks is one the reader enforces: a state just past one is
    /// refused by both, a state at it is read back.
    @Test("validate() refuses exactly what read() refuses")
    func validateMatchesTheReader() throws {
        var atLimit = Self.sample()
        atLimit.teardownHolders = Array(repeating: 42, count: CPRState.Limits.holders)
        atLimit.previousArguments = Array(repeating: "-S", count: CPRState.Limits.arguments)
        try atLimit.validate()
        let fd = try atLimit.writeToMemfd()
        defer { close(fd) }
        #expect(try CPRState.read(fd: fd).unreadableRecord == nil)

        var holders = atLimit
        holders.teardownHolders.append(43)
        #expect(throws: StateFormatError.self) { try holders.validate() }
        let holdersFD = try holders.writeToMemfd()
        defer { close(holdersFD) }
        #expect(try CPRState.read(fd: holdersFD).unreadableRecord?.contains("1025 holders") == true)

        var arguments = Self.sample()
        arguments.previousArguments.append(String(repeating: "x", count: CPRState.Limits.argumentBytes + 1))
        #expect(throws: StateFormatError.self) { try arguments.validate() }
        let argumentsFD = try arguments.writeToMemfd()
        defer { close(argumentsFD) }
        #expect(throws: StateFormatError.self) { try CPRState.read(fd: argumentsFD) }
    }

    @Test("a long rollback reason is clipped to what a reader takes")
    func clippedReason() throws {
        let long = String(repeating: "é", count: CPRState.Limits.reasonBytes)
        let clipped = CPRState.clipped(long)
        #expect(clipped.utf8.count <= CPRState.Limits.reasonBytes && clipped.hasSuffix("..."))
        #expect(CPRState.clipped("short") == "short")
        var state = Self.sample()
        state.rollbackReason = clipped
        try state.validate()
    }

    @Test func roundTrip() throws {
        let fd = try Self.sample().writeToMemfd()
        defer { close(fd) }
        let state = try CPRState.read(fd: fd)
        #expect(state.unreadableRecord == nil)
        #expect(state.generation == 3 && state.fds == [.init(name: "ram:pc.ram", fd: 7)])
        #expect(state.history.count == 1 && state.history[0].pauseMicroseconds == 3100)
    }

    /// A newer record layout this image cannot read: it can still roll back, and the rollback
    /// hands the record back untouched, so the previous image keeps the VM's history.
    @Test func anUnreadableRecordTravelsBackUnchanged() throws {
        let original = try Self.sample().writeToMemfd()
        defer { close(original) }
        var sections = try Self.sections(original)
        sections[1] = StateSection(name: sections[1].name, version: 99, payload: sections[1].payload + [1, 2, 3])
        var template = Array("/tmp/cprvmm-cpr-state-XXXXXX".utf8CString)
        let newer = mkstemp(&template)
        try #require(newer >= 0)
        unlink(String(cString: template))
        defer { close(newer) }
        let writer = try StateWriter(sink: FileDescriptorSink(fd: newer))
        for section in sections { try writer.writeSection(section.name, version: section.version, payload: section.payload) }
        try writer.finish()

        var state = try CPRState.read(fd: newer)
        #expect(state.unreadableRecord != nil)
        #expect(state.history.isEmpty)
        state.rollbackReason = "could not load"
        let rolledBack = try state.writeToMemfd()
        defer { close(rolledBack) }
        let written = try Self.sections(rolledBack)
        #expect(written[1] == sections[1], "the record was not handed back as it came")
        #expect(try CPRState.read(fd: rolledBack).rollbackReason == "could not load")
    }
}
