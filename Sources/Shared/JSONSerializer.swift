// Serialization in QEMU's style: `": "` after keys, `", "` between members (compact form),
// strings escaped per RFC 8259 with non-ASCII left as UTF-8.

struct JSONSerializer {
    let pretty: Bool
    private var bytes: [UInt8] = []

    init(pretty: Bool) {
        self.pretty = pretty
    }

    var output: String { String(decoding: bytes, as: UTF8.self) }

    mutating func write(_ value: JSONValue, level: Int) {
        switch value {
        case .null: append("null")
        case .bool(let flag): append(flag ? "true" : "false")
        case .int(let number): append(String(number))
        case .double(let number): append(Self.format(number))
        case .string(let text): writeString(text)
        case .array(let elements):
            guard !elements.isEmpty else { return append("[]") }
            bytes.append(UInt8(ascii: "["))
            for (i, element) in elements.enumerated() {
                writeSeparator(first: i == 0, level: level + 1)
                write(element, level: level + 1)
            }
            writeClosing(UInt8(ascii: "]"), level: level)
        case .object(let object):
            guard !object.isEmpty else { return append("{}") }
            bytes.append(UInt8(ascii: "{"))
            for (i, member) in object.enumerated() {
                writeSeparator(first: i == 0, level: level + 1)
                writeString(member.key)
                append(": ")
                write(member.value, level: level + 1)
            }
            writeClosing(UInt8(ascii: "}"), level: level)
        }
    }

    /// Swift's shortest round-trip form ("1.5", "0.001", "2.0", "1e-05"), all valid JSON;
    /// infinities and NaN, which JSON cannot express, become null.
    static func format(_ number: Double) -> String {
        number.isFinite ? number.description : "null"
    }

    private mutating func writeSeparator(first: Bool, level: Int) {
        if pretty {
            if !first { bytes.append(UInt8(ascii: ",")) }
            newline(level: level)
        } else if !first {
            append(", ")
        }
    }

    private mutating func writeClosing(_ bracket: UInt8, level: Int) {
        if pretty { newline(level: level) }
        bytes.append(bracket)
    }

    private mutating func newline(level: Int) {
        bytes.append(0x0A)
        bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: 2 * level))
    }

    private mutating func append(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }

    private mutating func writeString(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): append("\\\"")
            case UInt8(ascii: "\\"): append("\\\\")
            case 0x08: append("\\b")
            case 0x0C: append("\\f")
            case 0x0A: append("\\n")
            case 0x0D: append("\\r")
            case 0x09: append("\\t")
            case 0..<0x20: append("\\u" + hex(UInt32(byte), digits: 4).lowercased())
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
