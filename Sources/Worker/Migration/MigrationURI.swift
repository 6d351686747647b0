/// QEMU's migration URIs (migration/migration.c): where a migration stream goes or comes from.
///
/// The grammar follows QEMU's: `file:PATH[,offset=N]` (file_parse_offset: the first ",offset="
/// ends the path and N is a size as qemu_strtosz reads it: decimal, 0x hex, or a K/M/G/T suffix),
/// `unix:PATH`, `tcp:HOST:PORT` (inet_parse: an IPv6 address in brackets, an empty host for
/// "any address"), and `exec:COMMAND` (run with /bin/sh -c). QEMU's `fd:`, `vsock:` and `rdma:`
/// are not supported, nor inet options such as ",ipv4".
public enum MigrationURI: Equatable, Sendable, CustomStringConvertible {
    case file(path: String, offset: UInt64)
    case unix(path: String)
    case tcp(host: String, port: UInt16)
    case exec(command: String)
    /// `memfd:`: for a live update only, the state goes into a memfd the new image inherits
    /// (no file system involved).
    case memfd

    static let memfdOnlyForLiveUpdate = "memfd: is only for a live update (mode cpr-exec): the state lives in a memfd the new image inherits"

    public static func parse(_ text: String) throws(MigrationURIError) -> MigrationURI {
        if let rest = text.removingPrefix("file:") {
            var path = rest
            var offset: UInt64 = 0
            if let marker = rest.firstRange(of: ",offset=") {
                path = String(rest[..<marker.lowerBound])
                let value = String(rest[marker.upperBound...])
                guard let parsed = SizeParser.parse(value, defaultUnit: 1) else {
                    throw MigrationURIError("\(text): invalid offset")
                }
                offset = parsed
            }
            guard !path.isEmpty else { throw MigrationURIError("file: URI needs a path") }
            return .file(path: path, offset: offset)
        }
        if text == "memfd:" { return .memfd }
        if let path = text.removingPrefix("unix:") {
            guard !path.isEmpty else { throw MigrationURIError("unix: URI needs a path") }
            return .unix(path: path)
        }
        if let command = text.removingPrefix("exec:") {
            guard command.contains(where: { $0 != " " && $0 != "\t" }) else {
                throw MigrationURIError("exec: URI needs a command")
            }
            return .exec(command: command)
        }
        if let address = text.removingPrefix("tcp:") {
            let (host, port) = try parseHostPort(address, uri: text)
            return .tcp(host: host, port: port)
        }
        throw MigrationURIError(
            "invalid migration URI '\(text)' (use file:PATH[,offset=N], unix:PATH, tcp:HOST:PORT, exec:COMMAND, or memfd: for a live update)")
    }

    /// unix, tcp and exec stream; file does not (cpr modes need a non-streaming URI).
    public var isStreaming: Bool {
        switch self {
        case .file, .memfd: return false
        case .unix, .tcp, .exec: return true
        }
    }

    /// Back to the URI text; `parse(uri.description) == uri`.
    public var description: String {
        switch self {
        case .file(let path, let offset): return offset == 0 ? "file:\(path)" : "file:\(path),offset=\(offset)"
        case .unix(let path): return "unix:\(path)"
        case .tcp(let host, let port): return host.contains(":") ? "tcp:[\(host)]:\(port)" : "tcp:\(host):\(port)"
        case .exec(let command): return "exec:\(command)"
        case .memfd: return "memfd:"
        }
    }

    /// "HOST:PORT", "[IPV6]:PORT" or ":PORT" (any address).
    private static func parseHostPort(_ address: String, uri: String) throws(MigrationURIError) -> (String, UInt16) {
        let host: Substring
        let portText: Substring
        if address.hasPrefix("[") {
            guard let close = address.firstIndex(of: "]") else {
                throw MigrationURIError("\(uri): missing ']' after the IPv6 address")
            }
            host = address[address.index(after: address.startIndex)..<close]
            let rest = address[address.index(after: close)...]
            guard rest.first == ":" else { throw MigrationURIError("\(uri): expected tcp:HOST:PORT") }
            portText = rest.dropFirst()
            guard !host.isEmpty else { throw MigrationURIError("\(uri): empty IPv6 address") }
        } else {
            guard let colon = address.firstIndex(of: ":") else {
                throw MigrationURIError("\(uri): expected tcp:HOST:PORT")
            }
            host = address[..<colon]
            portText = address[address.index(after: colon)...]
        }
        guard !portText.isEmpty, portText.utf8.count <= 5, portText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let value = UInt32(portText), value <= UInt32(UInt16.max)
        else { throw MigrationURIError("\(uri): invalid port") }
        return (String(host), UInt16(value))
    }
}

public struct MigrationURIError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

private extension String {
    func removingPrefix(_ prefix: String) -> String? {
        hasPrefix(prefix) ? String(dropFirst(prefix.count)) : nil
    }
}
