import Glibc
import Testing

@testable import Shared

/// The reply-matching rules of QMPClient, without a server. (Connection errors are tested in
/// CprctlTests; the protocol against a real server in the end-to-end tests.)
@Suite struct QMPClientInterpretTests {
    static let path = "/run/cprvmm/web1/qmp.sock"

    func interpret(_ message: JSONValue, id: JSONValue = 7) throws(QMPClientError) -> JSONValue? {
        try QMPClient.interpret(message, expectedID: id, path: Self.path)
    }

    @Test func returnValueOfMatchingReply() throws {
        #expect(try interpret(["return": ["status": "running"], "id": 7]) == ["status": "running"])
        #expect(try interpret(["return": [:]]) == [:])  // no id: taken as ours
        #expect(try interpret(["return": 5, "id": 7]) == 5)
    }

    @Test func eventsAndOtherIdsAreSkipped() throws {
        #expect(try interpret(["event": "STOP", "timestamp": ["seconds": 1, "microseconds": 0]]) == nil)
        #expect(try interpret(["return": [:], "id": 6]) == nil)
        #expect(try interpret(["return": [:], "id": "7"]) == nil)
    }

    @Test func errorReplyBecomesACommandError() {
        let reply: JSONValue = ["error": ["class": "CommandNotFound", "desc": "The command x has not been found"], "id": 7]
        #expect(throws: QMPClientError.command(errorClass: "CommandNotFound", desc: "The command x has not been found")) {
            try interpret(reply)
        }
        #expect(QMPClientError.command(errorClass: "GenericError", desc: "boom").description == "GenericError: boom")
    }

    @Test func malformedRepliesAreProtocolErrors() {
        #expect(throws: QMPClientError.unexpectedReply(path: Self.path, detail: "expected a JSON object, got [1]")) {
            try interpret([1])
        }
        #expect(throws: QMPClientError.unexpectedReply(path: Self.path, detail: #"malformed error {"class": 1}"#)) {
            try interpret(["error": ["class": 1]])
        }
        #expect(throws: QMPClientError.unexpectedReply(path: Self.path, detail: #"expected "return" or "error", got {"id": 7}"#)) {
            try interpret(["id": 7])
        }
    }

    @Test func errorDescriptions() {
        let path = Self.path
        #expect(
            QMPClientError.connect(path: path, errno: ENOENT).description == "cannot connect to \(path): no such file (is the VM running?)")
        #expect(
            QMPClientError.connect(path: path, errno: ECONNREFUSED).description
                == "cannot connect to \(path): connection refused (is the VM running?)")
        #expect(
            QMPClientError.connect(path: path, errno: EACCES).description
                == "cannot connect to \(path): permission denied (run as root or as the VM's user)")
        #expect(QMPClientError.connect(path: path, errno: ENAMETOOLONG).description == "cannot connect to \(path): file name too long")
        #expect(QMPClientError.timeout(path: path, seconds: 5).description == "no answer from \(path) within 5 s")
        #expect(QMPClientError.timeout(path: path, seconds: 0.25).description == "no answer from \(path) within 0.25 s")
        #expect(QMPClientError.unexpectedReply(path: path, detail: "x").description == "unexpected reply from \(path): x")
        #expect(QMPClientError.connectionLost(path: path, detail: "y").description == "lost connection to \(path): y")
    }

    @Test func longRepliesAreAbbreviatedInMessages() {
        let long = String(repeating: "x", count: 200)
        #expect(QMPChannel.abbreviate(long) == String(repeating: "x", count: 80) + "…")
        #expect(QMPChannel.abbreviate("short") == "short")
    }
}
