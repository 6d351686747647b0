import Glibc
import Testing

@testable import Worker

@Suite struct RecoveryFallbackTests {
    typealias Attempt = RecoveryFallback.Attempt
    let newBinary = Attempt(device: 2049, inode: 100, version: "0.2.0", buildID: "aa")
    let oldBinary = Attempt(device: 2049, inode: 200, version: "0.1.0", buildID: "bb")

    func file(_ attempt: Attempt) -> stat {
        var info = stat()
        info.st_dev = UInt(attempt.device)
        info.st_ino = UInt(attempt.inode)
        return info
    }

    @Test("an attempt survives its line; junk lines are skipped")
    func lines() {
        let text = newBinary.line + "\ngarbage\n1:x y z\n" + oldBinary.line + "\n"
        #expect(RecoveryFallback.attempts(in: text) == [newBinary, oldBinary])
        #expect(RecoveryFallback.attempts(in: "") == [])
    }

    @Test("the first try of a binary goes on, whatever the fallback")
    func firstTry() {
        #expect(RecoveryFallback.decide(earlier: [], own: newBinary, fallbackPath: "/prev", fallback: file(oldBinary)) == nil)
        #expect(RecoveryFallback.decide(earlier: [oldBinary], own: newBinary, fallbackPath: "/prev", fallback: file(oldBinary)) == nil)
    }

    @Test("a binary that already died on the state hands it to a fallback that has not tried")
    func fallsBack() {
        #expect(RecoveryFallback.decide(earlier: [newBinary], own: newBinary, fallbackPath: "/prev", fallback: file(oldBinary)) == "/prev")
    }

    @Test("no fallback: when none is set, when it is this file, when it died on the state too")
    func noFallback() {
        #expect(RecoveryFallback.decide(earlier: [newBinary], own: newBinary, fallbackPath: nil, fallback: nil) == nil)
        #expect(RecoveryFallback.decide(earlier: [newBinary], own: newBinary, fallbackPath: "/prev", fallback: nil) == nil)
        #expect(RecoveryFallback.decide(earlier: [newBinary], own: newBinary, fallbackPath: "/self", fallback: file(newBinary)) == nil)
        #expect(RecoveryFallback.decide(earlier: [newBinary, oldBinary], own: newBinary, fallbackPath: "/prev", fallback: file(oldBinary)) == nil)
    }
}
