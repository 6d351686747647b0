import Testing

@testable import Shared

@Suite struct JSONParsingTests {
    @Test(arguments: [
        ("null", JSONValue.null),
        ("true", .bool(true)),
        ("false", .bool(false)),
        ("0", .int(0)),
        ("-0", .int(0)),
        ("42", .int(42)),
        ("-17", .int(-17)),
        ("9223372036854775807", .int(Int64.max)),
        ("-9223372036854775808", .int(Int64.min)),
        ("9223372036854775808", .double(9223372036854775808.0)),
        ("-9223372036854775809", .double(-9223372036854775809.0)),
        ("1.5", .double(1.5)),
        ("1.0", .double(1.0)),
        ("-0.25", .double(-0.25)),
        ("1e2", .double(100)),
        ("1E+2", .double(100)),
        ("25e-1", .double(2.5)),
        ("0.001", .double(0.001)),
        ("\"\"", .string("")),
        ("\"abc\"", .string("abc")),
        ("[]", .array([])),
        ("{}", .object(JSONObject())),
        (" \t\r\n 7 \n", .int(7)),
    ])
    func scalarsAndEmptyContainers(text: String, expected: JSONValue) throws {
        #expect(try JSON.parse(text) == expected)
    }

    @Test func nestedValue() throws {
        let value = try JSON.parse(#"{"return": {"status": "running", "running": true, "list": [1, 2.5, null, "x", {}]}}"#)
        let expected: JSONValue = ["return": ["status": "running", "running": true, "list": [1, 2.5, nil, "x", [:]]]]
        #expect(value == expected)
        #expect(value["return"]?["status"]?.stringValue == "running")
        #expect(value["return"]?["running"]?.boolValue == true)
        #expect(value["return"]?["list"]?.arrayValue?.count == 5)
        #expect(value["missing"] == nil)
    }

    @Test func objectsKeepInsertionOrder() throws {
        let value = try JSON.parse(#"{"z": 1, "a": 2, "m": 3}"#)
        #expect(value.objectValue?.keys == ["z", "a", "m"])
        #expect(JSON.serialize(value) == #"{"z": 1, "a": 2, "m": 3}"#)
    }

    @Test("a repeated member name is refused, as QEMU's parser does, at any depth")
    func duplicateKeyIsRefused() throws {
        let error = #expect(throws: JSONError.self) { try JSON.parse(#"{"a": 1, "b": 2, "a": 3}"#) }
        #expect(error.map { "\($0)" }?.contains("duplicate key 'a'") == true, "\(String(describing: error))")
        #expect(throws: JSONError.self) { try JSON.parse(#"{"x": [{"k": 1, "k": 1}]}"#) }
        #expect(try JSON.parse(#"{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}"#)["a"]?["a"] == 1, "the same name in different objects is fine")
    }

    @Test func stringEscapes() throws {
        #expect(try JSON.parse(#""a\"b\\c\/d\b\f\n\r\t""#) == .string("a\"b\\c/d\u{8}\u{C}\n\r\t"))
        #expect(try JSON.parse(#""\u00e9\u00E9\u4e2d""#) == .string("éé中"))
        #expect(try JSON.parse(#""x\u0000y""#) == .string("x\u{0}y"))
        #expect(try JSON.parse("\"é中😀\"") == .string("é中😀"))
    }

    @Test func surrogatePairs() throws {
        #expect(try JSON.parse(#""\ud83d\ude00""#) == .string("😀"))
        #expect(try JSON.parse(#""\uD834\uDD1E!""#) == .string("𝄞!"))
        #expect(try JSON.parse(#""\udbff\udfff""#) == .string("\u{10FFFF}"))
    }

    @Test func parsesBytes() throws {
        #expect(try JSON.parse(Array("[1, \"é\"]".utf8)) == [1, "é"])
        #expect(try JSON.parse(ArraySlice(Array("x[true]".utf8)).dropFirst()) == [true])
    }

    @Test(arguments: [
        "", " ", "{", "[", "]", "}", "[1,]", "[,1]", #"{"a": 1,}"#, #"{"a" 1}"#, "{a: 1}", #"{"a"}"#, #"{"a":}"#,
        "[1 2]", "[1,2", #"{"a": 1"#, "01", "-01", "00", "-", "1.", ".5", "1e", "1e+", "+1", "1.5.2", "0x10", "1a",
        "tru", "truex", "True", "nul", "NaN", "Infinity", "-Infinity", "\"abc", "'a'", "[1]x", "{} {}", "1 2",
        "1e400", "-1e400", "\"a\nb\"", "\"a\tb\"", "\"\u{1F}\"", #""\x""#, #""\u12""#, #""\u12G4""#, #""\U0041""#, #""\"#,
        #""\ud800""#, #""\udc00""#, #""\ud800\u0041""#, #""\ud800x""#, #""\ud800\ud800""#, #""\ude00\ud83d""#,
        "\u{FEFF}1", "/* c */ 1", "[1,,2]", "{\"a\":1 \"b\":2}",
    ])
    func malformedTextIsRefused(text: String) {
        #expect(throws: JSONError.self) { try JSON.parse(text) }
    }

    @Test(
        arguments: [
            [0x22, 0xFF, 0x22],  // never valid in UTF-8
            [0x22, 0x80, 0x22],  // lone continuation byte
            [0x22, 0xC0, 0xAF, 0x22],  // overlong "/"
            [0x22, 0xE0, 0x80, 0xAF, 0x22],  // overlong
            [0x22, 0xED, 0xA0, 0x80, 0x22],  // UTF-8-encoded surrogate U+D800
            [0x22, 0xE2, 0x82, 0x22],  // truncated sequence
            [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // above U+10FFFF
            [0x22, 0xE2, 0x82],  // truncated at end of input
            [0xC3, 0xA9],  // non-ASCII outside a string
        ] as [[UInt8]])
    func invalidUTF8IsRefused(bytes: [UInt8]) {
        #expect(throws: JSONError.self) { try JSON.parse(bytes) }
    }

    @Test func errorMessagesNameTheProblemAndOffset() {
        func error(_ text: String) -> JSONError? {
            do {
                _ = try JSON.parse(text)
                return nil
            } catch {
                return error
            }
        }
        #expect(error(#"{"key" 1}"#) == JSONError("expected ':' after object key, found '1'", offset: 7))
        #expect(error(#"{"key" 1}"#)?.description == "expected ':' after object key, found '1' at offset 7")
        #expect(error("[1 2]") == JSONError("expected ',' or ']' after array element, found '2'", offset: 3))
        #expect(error(#"{"a": 1 "b": 2}"#) == JSONError("expected ',' or '}' after object member, found '\"'", offset: 8))
        #expect(error("{1: 2}") == JSONError("expected a string key after '{', found '1'", offset: 1))
        #expect(error("[1") == JSONError("expected ',' or ']' after array element, found end of input", offset: 2))
        #expect(error("[1,") == JSONError("unexpected end of input", offset: 3))
        #expect(error("") == JSONError("expected a JSON value, found end of input", offset: 0))
        #expect(error("012") == JSONError("leading zeros are not allowed in numbers", offset: 0))
        #expect(error("[1] x") == JSONError("unexpected 'x' after the JSON value", offset: 4))
        #expect(error("\"ab") == JSONError("unterminated string", offset: 0))
        #expect(error("\"a\nb\"") == JSONError("control character U+000A in string (must be escaped)", offset: 2))
        #expect(error(#""\q""#) == JSONError(#"invalid escape '\q' in string"#, offset: 1))
        #expect(error(#"["\ud800"]"#) == JSONError(#"lone surrogate \uD800 in string"#, offset: 2))
        #expect(error(#""\udc00""#) == JSONError(#"lone surrogate \uDC00 in string"#, offset: 1))
        #expect(error("1e400") == JSONError("number out of range", offset: 0))
        #expect(error("nul") == JSONError("invalid literal (expected 'null')", offset: 0))
        #expect(error("@") == JSONError("expected a JSON value, found '@'", offset: 0))
    }

    @Test func invalidUTF8ErrorOffset() {
        #expect(throws: JSONError("invalid UTF-8 in string", offset: 2)) { try JSON.parse([0x22, 0x61, 0xFF, 0x22] as [UInt8]) }
    }

    @Test func depthLimitWithoutStackOverflow() {
        let deepArrays = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONError("nesting deeper than 64 levels", offset: 64)) { try JSON.parse(deepArrays) }
        let deepObjects = String(repeating: #"{"a": "#, count: 10_000)
        #expect(throws: JSONError.self) { try JSON.parse(deepObjects) }
        let unclosed = String(repeating: "[", count: 100_000)
        #expect(throws: JSONError.self) { try JSON.parse(unclosed, maxDepth: 200_000) }
    }

    @Test func depthLimitIsExact() throws {
        let atLimit = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(throws: Never.self) { try JSON.parse(atLimit) }
        let overLimit = "[" + atLimit + "]"
        #expect(throws: JSONError.self) { try JSON.parse(overLimit) }
        #expect(try JSON.parse(#"{"a": [1]}"#, maxDepth: 2) == ["a": [1]])
        #expect(throws: JSONError.self) { try JSON.parse(#"{"a": [[1]]}"#, maxDepth: 2) }
        #expect(try JSON.parse("7", maxDepth: 0) == 7)
        #expect(throws: JSONError.self) { try JSON.parse("[]", maxDepth: 0) }
    }

    @Test func deepButAllowedNestingParses() throws {
        let depth = 1000
        var value = try JSON.parse(String(repeating: "[", count: depth) + String(repeating: "]", count: depth), maxDepth: depth)
        var levels = 1
        while let inner = value.arrayValue?.first {
            value = inner
            levels += 1
        }
        #expect(levels == depth)
    }
}

@Suite struct JSONSerializationTests {
    @Test func qemuStyleCompactForm() {
        let reply: JSONValue = ["return": ["status": "running", "running": true]]
        #expect(JSON.serialize(reply) == #"{"return": {"status": "running", "running": true}}"#)
        #expect(JSON.serialize(["return": [:]]) == #"{"return": {}}"#)
        #expect(JSON.serialize([]) == "[]")
        #expect(JSON.serialize([1, 2.5, "x", nil, false, [], [:]]) == #"[1, 2.5, "x", null, false, [], {}]"#)
        let error: JSONValue = ["error": ["class": "GenericError", "desc": "boom"], "id": 3]
        #expect(JSON.serialize(error) == #"{"error": {"class": "GenericError", "desc": "boom"}, "id": 3}"#)
    }

    @Test func numbers() {
        #expect(JSON.serialize(.int(Int64.max)) == "9223372036854775807")
        #expect(JSON.serialize(.int(Int64.min)) == "-9223372036854775808")
        #expect(JSON.serialize(.double(1.5)) == "1.5")
        #expect(JSON.serialize(.double(0.001)) == "0.001")
        #expect(JSON.serialize(.double(2.0)) == "2.0")
        #expect(JSON.serialize(.double(1764250801.123)) == "1764250801.123")
        #expect(JSON.serialize(.double(-0.0)) == "-0.0")
        #expect(JSON.serialize(.double(.infinity)) == "null")
        #expect(JSON.serialize(.double(-.infinity)) == "null")
        #expect(JSON.serialize(.double(.nan)) == "null")
        #expect(JSON.serialize([.double(.nan)]) == "[null]")
    }

    @Test(arguments: [1e-5, 1e20, 1e300, Double.leastNonzeroMagnitude, 0.1, 123456.789, -2.5e-7, Double.greatestFiniteMagnitude])
    func doublesRoundTrip(number: Double) throws {
        let text = JSON.serialize(.double(number))
        #expect(try JSON.parse(text) == .double(number), "\(text)")
    }

    @Test func stringEscaping() {
        #expect(JSON.serialize("a\"b\\c") == #""a\"b\\c""#)
        #expect(JSON.serialize("\n\r\t\u{8}\u{C}") == #""\n\r\t\b\f""#)
        #expect(JSON.serialize("\u{0}\u{1}\u{1F}") == #""\u0000\u0001\u001f""#)
        #expect(JSON.serialize("/path/x") == #""/path/x""#)
        #expect(JSON.serialize("é中😀\u{7F}") == "\"é中😀\u{7F}\"")
        #expect(JSON.serialize(["k\"ey": "v"]) == #"{"k\"ey": "v"}"#)
    }

    @Test func prettyForm() {
        let value: JSONValue = [
            "name": "web1", "running": true, "memory": [["id": "pc.ram", "size": 1024]],
            "sockets": ["qmp": ["/run/q.sock"], "hmp": []], "serial": nil, "empty": [:],
        ]
        let expected = """
            {
              "name": "web1",
              "running": true,
              "memory": [
                {
                  "id": "pc.ram",
                  "size": 1024
                }
              ],
              "sockets": {
                "qmp": [
                  "/run/q.sock"
                ],
                "hmp": []
              },
              "serial": null,
              "empty": {}
            }
            """
        #expect(JSON.serializePretty(value) == expected)
        #expect(JSON.serializePretty(42) == "42")
        #expect(JSON.serializePretty([]) == "[]")
    }

    @Test(arguments: [
        #"{"return": {"status": "running", "running": true}}"#,
        #"[1, -2, 3.25, "x\ny", null, true, false, {"a": [{}], "b": []}]"#,
        #"{"é": "😀", "ctl": "\u0001", "q": "\"\\"}"#,
        #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 9}, "package": ""}, "capabilities": ["oob"]}}"#,
    ])
    func roundTrips(text: String) throws {
        let value = try JSON.parse(text)
        #expect(JSON.serialize(value) == text)
        #expect(try JSON.parse(JSON.serializePretty(value)) == value)
    }

    @Test func roundTripOfConstructedValue() throws {
        let value: JSONValue = [
            "s": "tab\there \u{0} é 😀", "i": -42, "d": 0.5, "b": false, "n": nil,
            "a": [1, [2, [3, ["deep": true]]]], "o": ["x": ["y": ["z": "w"]]],
        ]
        #expect(try JSON.parse(JSON.serialize(value)) == value)
        #expect(try JSON.parse(JSON.serializePretty(value)) == value)
    }
}

@Suite struct JSONObjectTests {
    @Test func subscriptSetReplacesInPlaceAndRemoves() {
        var object: JSONObject = ["a": 1, "b": 2, "c": 3]
        object["b"] = "two"
        #expect(object.keys == ["a", "b", "c"])
        object["b"] = nil
        #expect(object.keys == ["a", "c"])
        #expect(object["c"] == 3)
        object["b"] = 4
        #expect(object.keys == ["a", "c", "b"])
        #expect(object.count == 3)
        object["missing"] = nil
        #expect(object.count == 3)
        #expect(object.map(\.key) == ["a", "c", "b"])
    }

    @Test func literalWithDuplicateKeysKeepsTheLastValue() {
        let object: JSONObject = ["a": 1, "b": 2, "a": 3]
        #expect(object.keys == ["a", "b"])
        #expect(object["a"] == 3)
    }

    @Test func equalityIgnoresOrder() {
        let one: JSONObject = ["a": 1, "b": 2]
        let other: JSONObject = ["b": 2, "a": 1]
        #expect(one == other)
        #expect(one != ["a": 1, "b": 3])
        #expect(one != ["a": 1])
        #expect(one != ["a": 1, "c": 2])
    }

    @Test func accessors() {
        #expect(JSONValue.int(3).doubleValue == 3)
        #expect(JSONValue.double(3).intValue == nil)
        #expect(JSONValue.string("x").stringValue == "x")
        #expect(JSONValue.int(3).stringValue == nil)
        #expect(JSONValue.null.isNull)
        #expect(JSONValue.array([1]).arrayValue == [1])
        #expect(JSONValue.object(["a": 1]).objectValue == ["a": 1])
        #expect(JSONValue.array([1])["a"] == nil)
    }

    @Test func manyMembersStayFast() throws {
        // O(1) lookup: 100k members must not take quadratic time.
        var text = "{"
        for i in 0..<100_000 { text += (i == 0 ? "" : ",") + "\"k\(i)\":\(i)" }
        text += "}"
        let value = try JSON.parse(text)
        #expect(value.objectValue?.count == 100_000)
        #expect(value["k99999"] == 99999)
    }
}
