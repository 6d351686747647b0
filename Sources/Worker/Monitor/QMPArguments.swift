import Shared

/// A command's declared parameters, checked the way QEMU's generated visitors check them,
/// with QEMU's messages: unexpected, missing, or of the wrong type.
struct QMPParameter {
    enum Kind: String {
        case string = "string"
        case bool = "boolean"
        case int = "integer"
        case object = "object"
        case array = "array"
    }

    let name: String
    let kind: Kind
    let required: Bool

    static func required(_ name: String, _ kind: Kind) -> QMPParameter { QMPParameter(name: name, kind: kind, required: true) }
    static func optional(_ name: String, _ kind: Kind) -> QMPParameter { QMPParameter(name: name, kind: kind, required: false) }

    func accepts(_ value: JSONValue) -> Bool {
        switch (kind, value) {
        case (.string, .string), (.bool, .bool), (.int, .int), (.object, .object), (.array, .array): return true
        default: return false
        }
    }
}

enum QMPArguments {
    static func validate(_ arguments: JSONObject, against parameters: [QMPParameter]) throws(QMPError) {
        for key in arguments.keys where !parameters.contains(where: { $0.name == key }) {
            throw QMPError("Parameter '\(key)' is unexpected")
        }
        for parameter in parameters {
            guard let value = arguments[parameter.name] else {
                if parameter.required { throw QMPError("Parameter '\(parameter.name)' is missing") }
                continue
            }
            guard parameter.accepts(value) else {
                throw QMPError("Invalid parameter type for '\(parameter.name)', expected: \(parameter.kind.rawValue)")
            }
        }
    }
}
