import Shared

/// A QMP error reply: QEMU's error class and a one-line description.
struct QMPError: Error, Equatable {
    enum ErrorClass: String {
        case genericError = "GenericError"
        case commandNotFound = "CommandNotFound"
        case deviceNotActive = "DeviceNotActive"
        case deviceNotFound = "DeviceNotFound"
    }

    let errorClass: ErrorClass
    let desc: String

    init(_ errorClass: ErrorClass, _ desc: String) {
        self.errorClass = errorClass
        self.desc = desc
    }

    /// A GenericError, QEMU's class for almost everything.
    init(_ desc: String) {
        self.init(.genericError, desc)
    }

    var json: JSONValue { .object(["class": .string(errorClass.rawValue), "desc": .string(desc)]) }
}
