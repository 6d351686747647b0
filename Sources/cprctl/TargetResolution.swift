import Shared

/// The QMP socket to connect to, and the VM name it came from (nil for --socket).
struct ResolvedTarget: Equatable {
    let socketPath: String
    let name: String?
}

/// Why no single VM could be chosen automatically.
enum TargetResolutionError: Error, Equatable, CustomStringConvertible {
    case noVM(base: String)
    case severalVMs(base: String, names: [String])
    case invalidName(InvalidVMName)

    var description: String {
        switch self {
        case .noVM(let base):
            return "no VM found in \(base) (is one running? name it, or use --socket PATH)"
        case .severalVMs(let base, let names):
            return "\(names.count) VMs found in \(base): \(names.joined(separator: ", ")) (name one: cprctl status NAME)"
        case .invalidName(let error):
            return error.description
        }
    }
}

enum TargetResolver {
    /// Maps a target to a socket path; `.automatic` lists the VMs in `base`.
    static func resolve(_ target: VMTarget, base: String) throws(TargetResolutionError) -> ResolvedTarget {
        switch target {
        case .socket(let path):
            return ResolvedTarget(socketPath: path, name: nil)
        case .name(let name):
            do {
                return ResolvedTarget(socketPath: try RuntimeDirectory.qmpSocket(for: name, in: base), name: name)
            } catch {
                throw .invalidName(error)
            }
        case .automatic:
            let names = RuntimeDirectory.listVMs(in: base)
            guard let only = names.first else { throw .noVM(base: base) }
            guard names.count == 1 else { throw .severalVMs(base: base, names: names) }
            return try resolve(.name(only), base: base)
        }
    }
}
