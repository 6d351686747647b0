import Glibc

/// Where a named VM's sockets live, so that `cprctl status web1` finds the VM started with
/// `-name web1` without being told a path:
///
///     <base>/<NAME>/qmp.sock       QMP monitor
///     <base>/<NAME>/hmp.sock       HMP (human) monitor
///     <base>/<NAME>/console.sock   serial console
///
/// `<base>` is `$CPRVMM_RUNTIME_DIR` when set and not empty, else `/run/cprvmm`
/// (systemd's `RuntimeDirectory=cprvmm`).
public enum RuntimeDirectory {
    public static let environmentVariable = "CPRVMM_RUNTIME_DIR"
    public static let defaultBase = "/run/cprvmm"

    public static let qmpSocketName = "qmp.sock"
    public static let hmpSocketName = "hmp.sock"
    public static let consoleSocketName = "console.sock"

    /// The base directory, from the environment at the time of the call.
    public static var base: String {
        base(environmentValue: getenv(environmentVariable).map { String(cString: $0) })
    }

    /// The base directory for a given value of `$CPRVMM_RUNTIME_DIR` (nil: unset).
    /// Trailing slashes are dropped so joined paths read cleanly.
    public static func base(environmentValue: String?) -> String {
        guard var value = environmentValue, !value.isEmpty else { return defaultBase }
        while value.count > 1 && value.hasSuffix("/") { value.removeLast() }
        return value
    }

    /// Refuses names that cannot be a single path component: empty, containing '/' or NUL,
    /// "." or "..".
    public static func validate(name: String) throws(InvalidVMName) {
        if name.isEmpty { throw InvalidVMName(name: name, reason: "a name cannot be empty") }
        if name == "." || name == ".." { throw InvalidVMName(name: name, reason: "a name cannot be \".\" or \"..\"") }
        if name.utf8.contains(UInt8(ascii: "/")) { throw InvalidVMName(name: name, reason: "a name cannot contain '/'") }
        if name.utf8.contains(0) { throw InvalidVMName(name: name, reason: "a name cannot contain a NUL character") }
    }

    public static func isValid(name: String) -> Bool {
        do { try validate(name: name) } catch { return false }
        return true
    }

    /// `<base>/<name>`: the VM's own directory.
    public static func directory(for name: String, in base: String = RuntimeDirectory.base) throws(InvalidVMName) -> String {
        try validate(name: name)
        return join(base, name)
    }

    public static func qmpSocket(for name: String, in base: String = RuntimeDirectory.base) throws(InvalidVMName) -> String {
        join(try directory(for: name, in: base), qmpSocketName)
    }

    public static func hmpSocket(for name: String, in base: String = RuntimeDirectory.base) throws(InvalidVMName) -> String {
        join(try directory(for: name, in: base), hmpSocketName)
    }

    public static func consoleSocket(for name: String, in base: String = RuntimeDirectory.base) throws(InvalidVMName) -> String {
        join(try directory(for: name, in: base), consoleSocketName)
    }

    /// Names of the VMs under `base`: subdirectories with a valid name that contain a
    /// `qmp.sock` socket (which may be stale if its VM died). Sorted; empty when `base`
    /// is missing or unreadable.
    public static func listVMs(in base: String = RuntimeDirectory.base) -> [String] {
        guard let directory = opendir(base) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            // d_name is a fixed-size, NUL-terminated char array inside the dirent readdir returned.
            let name = withUnsafePointer(to: &entry.pointee.d_name) { tuple in
                tuple.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: tuple.pointee)) { String(cString: $0) }
            }
            guard isValid(name: name) else { continue }
            var info = stat()
            guard stat(join(join(base, name), qmpSocketName), &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else { continue }
            names.append(name)
        }
        return names.sorted()
    }

    private static func join(_ directory: String, _ component: String) -> String {
        directory.hasSuffix("/") ? directory + component : directory + "/" + component
    }
}

/// A VM name that cannot name a directory under the runtime directory.
public struct InvalidVMName: Error, Equatable, CustomStringConvertible {
    public let name: String
    public let reason: String

    public init(name: String, reason: String) {
        self.name = name
        self.reason = reason
    }

    public var description: String { "invalid VM name '\(name)': \(reason)" }
}
