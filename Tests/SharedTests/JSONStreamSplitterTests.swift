import Testing

@testable import Shared

@Suite struct JSONStreamSplitterTests {
    /// Feeds `chunks` one after the other and collects every message, as text.
    static func split(_ chunks: [String], maxMessageSize: Int = 1 << 20) throws -> [String] {
        var splitter = JSONStreamSplitter(maxMessageSize: maxMessageSize)
        var messages: [String] = []
        for chunk in chunks {
            splitter.append(Array(chunk.utf8))
            while let message = try splitter.next() { messages.append(String(decoding: message, as: UTF8.self)) }
        }
        return messages
    }

    @Test func backToBackObjectsWithoutNewline() throws {
        #expect(try Self.split([#"{"execute": "a"}{"execute": "b"}[1]"#]) == [#"{"execute": "a"}"#, #"{"execute": "b"}"#, "[1]"])
    }

    @Test func whitespaceBetweenMessagesIsDropped() throws {
        #expect(try Self.split(["\r\n  {\"a\": 1}\n\n\t{\"b\": 2}  \r\n"]) == [#"{"a": 1}"#, #"{"b": 2}"#])
    }

    @Test func objectSplitAcrossAppendsAtEveryByte() throws {
        let text = #"{"execute": "migrate", "arguments": {"uri": "file:/x}{[", "list": [1, {"b": "\"}"}]}}  {"id": 2}"#
        let whole = try Self.split([text])
        #expect(whole == [#"{"execute": "migrate", "arguments": {"uri": "file:/x}{[", "list": [1, {"b": "\"}"}]}}"#, #"{"id": 2}"#])
        #expect(try Self.split(text.map { String($0) }) == whole)
        for cut in 1..<text.utf8.count {
            let bytes = Array(text.utf8)
            var splitter = JSONStreamSplitter()
            var messages: [[UInt8]] = []
            splitter.append(bytes[..<cut])
            while let message = try splitter.next() { messages.append(message) }
            splitter.append(bytes[cut...])
            while let message = try splitter.next() { messages.append(message) }
            #expect(messages.map { String(decoding: $0, as: UTF8.self) } == whole, "cut at \(cut)")
        }
    }

    @Test func stringsContainingBracketsAndEscapes() throws {
        let messages = try Self.split([#"{"a": "}}]]", "b": "\\", "c": "\"{"}"#, #"["\\\"]", "]"]"#])
        #expect(messages == [#"{"a": "}}]]", "b": "\\", "c": "\"{"}"#, #"["\\\"]", "]"]"#])
        for message in messages { #expect(throws: Never.self) { try JSON.parse(message) } }
    }

    @Test func incompleteMessageWaitsForMore() throws {
        var splitter = JSONStreamSplitter()
        splitter.append(Array(#"{"a": [1, 2"#.utf8))
        #expect(try splitter.next() == nil)
        #expect(try splitter.next() == nil)
        splitter.append(Array("]}".utf8))
        #expect(try splitter.next() == Array(#"{"a": [1, 2]}"#.utf8))
        #expect(try splitter.next() == nil)
    }

    @Test func topLevelScalarsAreMessages() throws {
        #expect(try Self.split(["42 \"x\" true\nnull\r\n-1.5e3\t"]) == ["42", "\"x\"", "true", "null", "-1.5e3"])
        #expect(try Self.split(["\"a}b\"{\"c\": 1}"]) == ["\"a}b\"", #"{"c": 1}"#])
        #expect(try Self.split(["42{\"c\": 1}"]) == ["42", #"{"c": 1}"#])
    }

    @Test func scalarWithoutTerminatorWaits() throws {
        var splitter = JSONStreamSplitter()
        splitter.append(Array("12".utf8))
        #expect(try splitter.next() == nil)
        splitter.append(Array("34\n".utf8))
        #expect(try splitter.next() == Array("1234".utf8))
    }

    @Test func strayClosingBracketsAreMessagesOfTheirOwn() throws {
        #expect(try Self.split(["}]{\"a\": 1}]"]) == ["}", "]", #"{"a": 1}"#, "]"])
        #expect(try Self.split([", :"]) == [",", ":"])
        // Mismatched brackets end a message when the depth returns to zero; JSON.parse refuses it.
        let mismatched = try Self.split(["{]"])
        #expect(mismatched == ["{]"])
        #expect(throws: JSONError.self) { try JSON.parse(mismatched[0]) }
    }

    @Test func garbageNeverCrashes() throws {
        var splitter = JSONStreamSplitter(maxMessageSize: 4096)
        var generator = SystemRandomNumberGenerator()
        var messages = 0
        for _ in 0..<200 {
            let chunk = (0..<64).map { _ in UInt8.random(in: 0...255, using: &generator) }
            splitter.append(chunk)
            do {
                while let message = try splitter.next() {
                    messages += 1
                    _ = try? JSON.parse(message)
                }
            } catch {
                break  // a runaway string or container: the connection would be closed
            }
        }
        #expect(messages >= 0)
    }

    @Test func oversizeMessageThrowsAndStaysFailed() throws {
        var splitter = JSONStreamSplitter(maxMessageSize: 16)
        splitter.append(Array(#"{"a": "0123456789abcdef"}"#.utf8))
        #expect(throws: JSONError.self) { try splitter.next() }
        splitter.append(Array("{}".utf8))
        #expect(throws: JSONError.self) { try splitter.next() }
        #expect(splitter.pendingByteCount == 0)
    }

    @Test func oversizeIsDetectedBeforeTheMessageCompletes() throws {
        var splitter = JSONStreamSplitter(maxMessageSize: 1000)
        splitter.append(Array(#"{"a": ""#.utf8))
        #expect(try splitter.next() == nil)
        splitter.append([UInt8](repeating: UInt8(ascii: "x"), count: 2000))
        #expect(throws: JSONError("message longer than 1000 bytes", offset: 0)) { try splitter.next() }
    }

    @Test func messagesUpToTheLimitPass() throws {
        #expect(try Self.split([#"{"a":1} {"b":2}"#], maxMessageSize: 7) == [#"{"a":1}"#, #"{"b":2}"#])
        #expect(throws: JSONError.self) { try Self.split([#"{"a":1} {"b":22}"#], maxMessageSize: 7) }
        #expect(try Self.split(["1234 "], maxMessageSize: 4) == ["1234"])
        #expect(throws: JSONError.self) { try Self.split(["12345 "], maxMessageSize: 4) }
        #expect(try Self.split(["\"ab\""], maxMessageSize: 4) == ["\"ab\""])
    }

    @Test func bufferDoesNotGrowWithTraffic() throws {
        var splitter = JSONStreamSplitter(maxMessageSize: 1024)
        for i in 0..<10_000 {
            splitter.append(Array("{\"execute\": \"query-status\", \"id\": \(i)}\n  ".utf8))
            #expect(try splitter.next() != nil)
            #expect(try splitter.next() == nil)
        }
        #expect(splitter.pendingByteCount < 64)
    }

    @Test func endlessWhitespaceIsDiscarded() throws {
        var splitter = JSONStreamSplitter(maxMessageSize: 64)
        for _ in 0..<1000 {
            splitter.append([UInt8](repeating: 0x20, count: 1000))
            #expect(try splitter.next() == nil)
        }
        #expect(splitter.pendingByteCount <= 1000)
    }
}
