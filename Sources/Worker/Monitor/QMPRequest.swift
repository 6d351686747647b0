import Shared

/// One QMP message, decoded and checked before anything runs: the JSON, its shape (QEMU's
/// members and their types), negotiation, the command's name and its arguments. Pure: the
/// server acts on the result, and the fuzzer (Sources/cprvmm-fuzz) drives it with any bytes.
enum QMPRequest {
    /// Negotiation succeeded (`qmp_capabilities` before any other command).
    case negotiate(id: JSONValue?)
    /// A known command with valid arguments, to run.
    case command(QMPCommand, arguments: JSONObject, id: JSONValue?)
    /// What to answer instead, with the request's id when it had one.
    case refused(QMPError, id: JSONValue?)

    static func decode(_ message: [UInt8], negotiated: Bool) -> QMPRequest {
        let request: JSONValue
        do {
            request = try JSON.parse(message)
        } catch {
            return .refused(QMPError("JSON parse error, \(error)"), id: nil)
        }
        guard case .object(let object) = request else {
            return .refused(QMPError("QMP input must be a JSON object"), id: nil)
        }
        let id = object["id"]
        for key in object.keys where !["execute", "arguments", "id"].contains(key) {
            return .refused(QMPError("QMP input member '\(key)' is unexpected"), id: id)
        }
        guard let execute = object["execute"] else {
            return .refused(QMPError("QMP input lacks member 'execute'"), id: id)
        }
        guard case .string(let name) = execute else {
            return .refused(QMPError("QMP input member 'execute' must be a string"), id: id)
        }
        var arguments = JSONObject()
        if let value = object["arguments"] {
            guard case .object(let given) = value else {
                return .refused(QMPError("QMP input member 'arguments' must be an object"), id: id)
            }
            arguments = given
        }
        if !negotiated {
            guard name == "qmp_capabilities" else {
                return .refused(QMPError(.commandNotFound, "Expecting capabilities negotiation with 'qmp_capabilities'"), id: id)
            }
            if let enable = arguments["enable"], enable != .array([]) {
                return .refused(QMPError("Capability is not supported (cprvmm offers no QMP capabilities)"), id: id)
            }
            return .negotiate(id: id)
        }
        guard let command = QMPCommands.byName[name] else {
            return .refused(QMPError(.commandNotFound, "The command \(name) has not been found"), id: id)
        }
        do {
            try QMPArguments.validate(arguments, against: command.parameters)
        } catch {
            return .refused(error, id: id)
        }
        return .command(command, arguments: arguments, id: id)
    }
}
