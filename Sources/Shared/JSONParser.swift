// Strict RFC 8259 parser over UTF-8 bytes. It keeps open containers on an explicit stack
// instead of recursing, so nesting depth is limited by `maxDepth`, never by the thread's stack.
// An object with a repeated member name is refused (RFC 8259 leaves it open; QEMU refuses).

struct JSONParser {
    private let bytes: [UInt8]
    private let maxDepth: Int
    private var position = 0

    /// An open container: the elements or members read so far, and (in an object) the key
    /// whose value is being read.
    private struct Frame {
        var isObject: Bool
        var elements: [JSONValue] = []
        var members = JSONObject()
        var key = ""
    }

    init(bytes: [UInt8], maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    mutating func parseDocument() throws(JSONError) -> JSONValue {
        let value = try parseValue()
        skipWhitespace()
        if position < bytes.count {
            throw JSONError("unexpected \(describeByte(at: position)) after the JSON value", offset: position)
        }
        return value
    }

    // MARK: - Structure

    private mutating func parseValue() throws(JSONError) -> JSONValue {
        var stack: [Frame] = []
        while true {
            // Read one value; an opening bracket pushes a frame and reads its first element instead.
            skipWhitespace()
            guard position < bytes.count else {
                throw JSONError(stack.isEmpty ? "expected a JSON value, found end of input" : "unexpected end of input", offset: position)
            }
            var value: JSONValue
            switch bytes[position] {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                let isObject = bytes[position] == UInt8(ascii: "{")
                if stack.count >= maxDepth {
                    throw JSONError("nesting deeper than \(maxDepth) levels", offset: position)
                }
                position += 1
                skipWhitespace()
                if consume(isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                    value = isObject ? .object(JSONObject()) : .array([])
                } else {
                    var frame = Frame(isObject: isObject)
                    if isObject { frame.key = try parseKey(after: "'{'") }
                    stack.append(frame)
                    continue
                }
            default:
                value = try parseScalar()
            }

            // A value is complete: add it to its container; close containers that end here.
            while let top = stack.indices.last {
                if stack[top].isObject {
                    stack[top].members[stack[top].key] = value
                } else {
                    stack[top].elements.append(value)
                }
                skipWhitespace()
                if consume(UInt8(ascii: ",")) {
                    if stack[top].isObject {
                        skipWhitespace()
                        let keyStart = position
                        stack[top].key = try parseKey(after: "','")
                        // As QEMU's parser: a repeated member is an error, not "last one wins"
                        // ({"execute": "query-name", "execute": "stop"} must not stop the VM).
                        if stack[top].members[stack[top].key] != nil {
                            throw JSONError("duplicate key '\(stack[top].key)'", offset: keyStart)
                        }
                    }
                    break
                }
                let closing = stack[top].isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
                guard consume(closing) else {
                    let what = stack[top].isObject ? "',' or '}' after object member" : "',' or ']' after array element"
                    throw JSONError("expected \(what), found \(describeByte(at: position))", offset: position)
                }
                let frame = stack.removeLast()
                value = frame.isObject ? .object(frame.members) : .array(frame.elements)
            }
            if stack.isEmpty { return value }
        }
    }

    /// Reads `"key" :` inside an object.
    private mutating func parseKey(after what: String) throws(JSONError) -> String {
        skipWhitespace()
        guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
            throw JSONError("expected a string key after \(what), found \(describeByte(at: position))", offset: position)
        }
        let key = try parseString()
        skipWhitespace()
        guard consume(UInt8(ascii: ":")) else {
            throw JSONError("expected ':' after object key, found \(describeByte(at: position))", offset: position)
        }
        return key
    }

    private mutating func parseScalar() throws(JSONError) -> JSONValue {
        let start = position
        switch bytes[position] {
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        default: throw JSONError("expected a JSON value, found \(describeByte(at: start))", offset: start)
        }
    }

    private mutating func expectLiteral(_ literal: String) throws(JSONError) {
        let start = position
        for byte in literal.utf8 {
            guard position < bytes.count, bytes[position] == byte else {
                throw JSONError("invalid literal (expected '\(literal)')", offset: start)
            }
            position += 1
        }
        if position < bytes.count, isIdentifierByte(bytes[position]) {
            throw JSONError("invalid literal (expected '\(literal)')", offset: start)
        }
    }

    // MARK: - Numbers

    private mutating func parseNumber() throws(JSONError) -> JSONValue {
        let start = position
        let negative = consume(UInt8(ascii: "-"))
        guard position < bytes.count, isDigit(bytes[position]) else {
            throw JSONError("expected a digit in number", offset: position)
        }
        // Integer part, accumulated towards the sign so Int64.min fits.
        var integer: Int64 = 0
        var overflow = false
        if bytes[position] == UInt8(ascii: "0") {
            position += 1
            if position < bytes.count, isDigit(bytes[position]) {
                throw JSONError("leading zeros are not allowed in numbers", offset: start)
            }
        } else {
            while position < bytes.count, isDigit(bytes[position]) {
                let digit = Int64(bytes[position] - UInt8(ascii: "0"))
                if !overflow {
                    let (times10, o1) = integer.multipliedReportingOverflow(by: 10)
                    let (next, o2) = negative ? times10.subtractingReportingOverflow(digit) : times10.addingReportingOverflow(digit)
                    if o1 || o2 { overflow = true } else { integer = next }
                }
                position += 1
            }
        }
        var isInteger = true
        if consume(UInt8(ascii: ".")) {
            isInteger = false
            guard position < bytes.count, isDigit(bytes[position]) else {
                throw JSONError("expected a digit after '.' in number", offset: position)
            }
            while position < bytes.count, isDigit(bytes[position]) { position += 1 }
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E") {
            isInteger = false
            position += 1
            if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") {
                position += 1
            }
            guard position < bytes.count, isDigit(bytes[position]) else {
                throw JSONError("expected a digit in the exponent of number", offset: position)
            }
            while position < bytes.count, isDigit(bytes[position]) { position += 1 }
        }
        if position < bytes.count, isIdentifierByte(bytes[position]) || bytes[position] == UInt8(ascii: ".") {
            throw JSONError("invalid character \(describeByte(at: position)) in number", offset: position)
        }
        if isInteger && !overflow { return .int(integer) }
        // The text matched JSON's number grammar, a subset of what strtod accepts.
        let text = String(decoding: bytes[start..<position], as: UTF8.self)
        guard let double = Double(text), double.isFinite else {
            throw JSONError("number out of range", offset: start)
        }
        return .double(double)
    }

    // MARK: - Strings

    /// Reads a string starting at its opening quote, validating UTF-8 and decoding escapes.
    private mutating func parseString() throws(JSONError) -> String {
        let start = position
        position += 1  // opening quote
        let contentStart = position
        var decoded: [UInt8] = []  // used only once an escape is seen
        var sawEscape = false
        while true {
            guard position < bytes.count else {
                throw JSONError("unterminated string", offset: start)
            }
            let byte = bytes[position]
            switch byte {
            case UInt8(ascii: "\""):
                let result: String
                if sawEscape {
                    result = String(decoding: decoded, as: UTF8.self)
                } else {
                    result = String(decoding: bytes[contentStart..<position], as: UTF8.self)
                }
                position += 1
                return result
            case UInt8(ascii: "\\"):
                if !sawEscape {
                    sawEscape = true
                    decoded.append(contentsOf: bytes[contentStart..<position])
                }
                try parseEscape(into: &decoded)
            case 0..<0x20:
                throw JSONError("control character U+\(hex(UInt32(byte), digits: 4)) in string (must be escaped)", offset: position)
            case 0x20..<0x80:
                if sawEscape { decoded.append(byte) }
                position += 1
            default:
                let length = try validateUTF8Sequence()
                if sawEscape { decoded.append(contentsOf: bytes[position..<position + length]) }
                position += length
            }
        }
    }

    /// Decodes the escape at `position` (a backslash) and appends its UTF-8 encoding.
    private mutating func parseEscape(into decoded: inout [UInt8]) throws(JSONError) {
        let start = position
        guard position + 1 < bytes.count else { throw JSONError("unterminated string", offset: start) }
        let letter = bytes[position + 1]
        position += 2
        switch letter {
        case UInt8(ascii: "\""): decoded.append(UInt8(ascii: "\""))
        case UInt8(ascii: "\\"): decoded.append(UInt8(ascii: "\\"))
        case UInt8(ascii: "/"): decoded.append(UInt8(ascii: "/"))
        case UInt8(ascii: "b"): decoded.append(0x08)
        case UInt8(ascii: "f"): decoded.append(0x0C)
        case UInt8(ascii: "n"): decoded.append(0x0A)
        case UInt8(ascii: "r"): decoded.append(0x0D)
        case UInt8(ascii: "t"): decoded.append(0x09)
        case UInt8(ascii: "u"):
            let unit = try parseHex4(escapeStart: start)
            var scalarValue = UInt32(unit)
            if (0xDC00...0xDFFF).contains(unit) {
                throw JSONError("lone surrogate \\u\(hex(UInt32(unit), digits: 4)) in string", offset: start)
            }
            if (0xD800...0xDBFF).contains(unit) {
                let lowStart = position
                guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") else {
                    throw JSONError("lone surrogate \\u\(hex(UInt32(unit), digits: 4)) in string", offset: start)
                }
                position += 2
                let low = try parseHex4(escapeStart: lowStart)
                guard (0xDC00...0xDFFF).contains(low) else {
                    throw JSONError("lone surrogate \\u\(hex(UInt32(unit), digits: 4)) in string", offset: start)
                }
                scalarValue = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
            }
            // Surrogates were handled above, so this is always a valid scalar.
            decoded.append(contentsOf: Unicode.UTF8.encode(Unicode.Scalar(scalarValue)!)!)
        default:
            let shown =
                letter >= 0x20 && letter < 0x7F
                ? "'\\\(Character(Unicode.Scalar(letter)))'" : "'\\' + byte 0x\(hex(UInt32(letter), digits: 2))"
            throw JSONError("invalid escape \(shown) in string", offset: start)
        }
    }

    private mutating func parseHex4(escapeStart: Int) throws(JSONError) -> UInt16 {
        var value: UInt16 = 0
        for _ in 0..<4 {
            guard position < bytes.count, let digit = hexDigitValue(bytes[position]) else {
                throw JSONError("invalid \\u escape (expected 4 hex digits)", offset: escapeStart)
            }
            value = value << 4 | UInt16(digit)
            position += 1
        }
        return value
    }

    /// Checks the multi-byte UTF-8 sequence at `position` (RFC 3629: no overlong forms,
    /// no surrogates, nothing above U+10FFFF) and returns its length.
    private func validateUTF8Sequence() throws(JSONError) -> Int {
        let lead = bytes[position]
        let length: Int
        var secondRange: ClosedRange<UInt8> = 0x80...0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0:
            length = 3
            secondRange = 0xA0...0xBF
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED:
            length = 3
            secondRange = 0x80...0x9F
        case 0xF0:
            length = 4
            secondRange = 0x90...0xBF
        case 0xF1...0xF3: length = 4
        case 0xF4:
            length = 4
            secondRange = 0x80...0x8F
        default: throw JSONError("invalid UTF-8 in string", offset: position)
        }
        for i in 1..<length {
            let index = position + i
            guard index < bytes.count else { throw JSONError("invalid UTF-8 in string", offset: position) }
            let range = i == 1 ? secondRange : 0x80...0xBF
            guard range.contains(bytes[index]) else { throw JSONError("invalid UTF-8 in string", offset: position) }
        }
        return length
    }

    // MARK: - Bytes

    private mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    private mutating func consume(_ byte: UInt8) -> Bool {
        guard position < bytes.count, bytes[position] == byte else { return false }
        position += 1
        return true
    }

    private func describeByte(at offset: Int) -> String {
        guard offset < bytes.count else { return "end of input" }
        let byte = bytes[offset]
        if byte > 0x20 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        return "byte 0x\(hex(UInt32(byte), digits: 2))"
    }
}

private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

/// Bytes that would glue onto a literal or number ("truex", "12abc").
private func isIdentifierByte(_ byte: UInt8) -> Bool {
    isDigit(byte) || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "z")) || byte == UInt8(ascii: "_") || byte >= 0x80
}

private func hexDigitValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
    default: return nil
    }
}

/// Upper-case hex, zero-padded to `digits`.
func hex(_ value: UInt32, digits: Int) -> String {
    let text = String(value, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, digits - text.count)) + text
}
