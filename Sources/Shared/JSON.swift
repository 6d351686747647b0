// A small JSON library for QMP: the VMM's QMP server and cprctl both speak it.
// No Foundation: Shared is linked into the VMM binary, whose start-up time matters
// (every live update starts a new image).

/// A JSON value. Integers without fraction or exponent that fit Int64 are `.int`;
/// every other number is `.double`.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)
}

/// A JSON object that keeps its members in insertion order (so replies read like QEMU's)
/// with unique keys: setting an existing key replaces its value in place.
/// Equality ignores order, as JSON does: `{"a": 1, "b": 2} == {"b": 2, "a": 1}`.
public struct JSONObject: Equatable, Sendable, ExpressibleByDictionaryLiteral, Sequence {
    public typealias Element = (key: String, value: JSONValue)

    private var members: [Element] = []
    /// Key → position in `members`; keeps lookup O(1) however many members a peer sends.
    private var index: [String: Int] = [:]

    public init() {}

    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        for (key, value) in elements { self[key] = value }
    }

    /// Builds an object from members in order; a later duplicate key replaces the earlier value.
    public init<S: Sequence>(_ members: S) where S.Element == (String, JSONValue) {
        for (key, value) in members { self[key] = value }
    }

    public subscript(key: String) -> JSONValue? {
        get { index[key].map { members[$0].value } }
        set {
            if let position = index[key] {
                if let newValue {
                    members[position].value = newValue
                } else {
                    members.remove(at: position)
                    index[key] = nil
                    for i in position..<members.count { index[members[i].key] = i }
                }
            } else if let newValue {
                index[key] = members.count
                members.append((key: key, value: newValue))
            }
        }
    }

    /// The keys in insertion order.
    public var keys: [String] { members.map(\.key) }
    public var count: Int { members.count }
    public var isEmpty: Bool { members.isEmpty }

    public func makeIterator() -> IndexingIterator<[Element]> { members.makeIterator() }

    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.count == rhs.count else { return false }
        for (key, value) in lhs.members where rhs[key] != value { return false }
        return true
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral,
    ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        var object = JSONObject()
        for (key, value) in elements { object[key] = value }
        self = .object(object)
    }
    public init(nilLiteral: ()) { self = .null }
}

extension JSONValue {
    public var isNull: Bool { self == .null }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var intValue: Int64? {
        if case .int(let value) = self { return value }
        return nil
    }

    /// The number as a Double: `.double` as is, `.int` converted.
    public var doubleValue: Double? {
        switch self {
        case .double(let value): return value
        case .int(let value): return Double(value)
        default: return nil
        }
    }

    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    public var objectValue: JSONObject? {
        if case .object(let value) = self { return value }
        return nil
    }

    /// A member of an object; nil for a missing key or when the value is not an object.
    public subscript(key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }
}

/// Why a JSON text was refused, and the byte offset where that was noticed.
public struct JSONError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public let offset: Int

    public init(_ message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }

    public var description: String { "\(message) at offset \(offset)" }
}

public enum JSON {
    /// Strict RFC 8259 parsing of exactly one value, with whitespace around it allowed.
    /// Containers nested deeper than `maxDepth` are refused (the parser does not recurse,
    /// so a hostile peer cannot overflow the stack). Numbers whose magnitude does not fit
    /// a Double (1e400) are refused too. Invalid UTF-8, control characters in strings,
    /// bad escapes, lone surrogates, leading zeros and trailing garbage are errors.
    public static func parse(_ bytes: some Collection<UInt8>, maxDepth: Int = 64) throws(JSONError) -> JSONValue {
        var parser = JSONParser(bytes: Array(bytes), maxDepth: maxDepth)
        return try parser.parseDocument()
    }

    public static func parse(_ text: String, maxDepth: Int = 64) throws(JSONError) -> JSONValue {
        var parser = JSONParser(bytes: Array(text.utf8), maxDepth: maxDepth)
        return try parser.parseDocument()
    }

    /// Compact form in QEMU's style: `{"return": {"status": "running", "running": true}}`.
    /// No trailing newline. Non-finite doubles (which JSON cannot express) become null.
    public static func serialize(_ value: JSONValue) -> String {
        var serializer = JSONSerializer(pretty: false)
        serializer.write(value, level: 0)
        return serializer.output
    }

    /// Indented form for people: two spaces per level, one member or element per line.
    /// No trailing newline.
    public static func serializePretty(_ value: JSONValue) -> String {
        var serializer = JSONSerializer(pretty: true)
        serializer.write(value, level: 0)
        return serializer.output
    }
}
