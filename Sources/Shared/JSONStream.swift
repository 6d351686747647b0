/// Splits a byte stream into top-level JSON texts, as a QMP peer must: messages arrive back
/// to back, with or without newlines between them, and split across reads at any byte.
///
/// It only tracks strings, escapes and `{}`/`[]` depth; it does not validate. Each message
/// it returns goes to `JSON.parse`, which reports what is wrong with it. Like QEMU's JSON
/// streamer, anything at the top level is a message: an object or array ends at its closing
/// bracket, a string at its closing quote, a bare scalar (`42`, `true`, garbage) at the next
/// whitespace or structural character, and a stray `}`, `]`, `,` or `:` is a message of
/// its own. Whitespace between messages is dropped.
///
/// Memory stays bounded as long as the owner calls `next()` after each `append`: a message
/// that grows beyond `maxMessageSize` bytes before it completes makes `next()` throw.
public struct JSONStreamSplitter {
    public let maxMessageSize: Int

    private enum Kind { case container, string, scalar }

    private var buffer: [UInt8] = []
    /// Stream offset of buffer[0], for error offsets.
    private var discarded = 0
    /// Start of the pending message (or of unread input when none is pending).
    private var start = 0
    /// Next byte to examine; bytes in start..<scan have been classified already.
    private var scan = 0
    private var kind: Kind?
    private var depth = 0
    private var inString = false
    private var escaped = false
    private var failure: JSONError?

    public init(maxMessageSize: Int = 1 << 20) {
        self.maxMessageSize = max(1, maxMessageSize)
    }

    /// The number of bytes appended but not yet returned or dropped.
    public var pendingByteCount: Int { buffer.count - start }

    public mutating func append(_ bytes: some Collection<UInt8>) {
        guard failure == nil else { return }
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeFirst(start)
            discarded += start
            scan -= start
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete message's bytes, or nil when none is complete yet. Throws when the
    /// pending message exceeds `maxMessageSize`; the splitter then stays failed (close the
    /// connection: there is no telling where the next message would start).
    public mutating func next() throws(JSONError) -> [UInt8]? {
        if let failure { throw failure }
        while scan < buffer.count {
            let byte = buffer[scan]
            guard let kind else {
                scan += 1
                if isWhitespace(byte) {
                    start = scan
                    continue
                }
                switch byte {
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    self.kind = .container
                    depth = 1
                case UInt8(ascii: "\""):
                    self.kind = .string
                    inString = true
                case UInt8(ascii: "}"), UInt8(ascii: "]"), UInt8(ascii: ","), UInt8(ascii: ":"):
                    return emit()
                default:
                    self.kind = .scalar
                }
                continue
            }
            if inString {
                try includeByte()
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                    if kind == .string { return emit() }
                }
                continue
            }
            switch kind {
            case .container:
                try includeByte()
                switch byte {
                case UInt8(ascii: "\""): inString = true
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return emit() }
                default: break
                }
            case .scalar:
                if isWhitespace(byte) || isStructural(byte) { return emit() }  // the terminator is not part of it
                try includeByte()
            case .string:
                preconditionFailure("string state is handled above")
            }
        }
        return nil
    }

    /// Adds the byte at `scan` to the pending message, unless that makes it too long.
    private mutating func includeByte() throws(JSONError) {
        if scan - start >= maxMessageSize {
            let error = JSONError("message longer than \(maxMessageSize) bytes", offset: discarded + start)
            failure = error
            buffer = []
            start = 0
            scan = 0
            throw error
        }
        scan += 1
    }

    private mutating func emit() -> [UInt8] {
        let message = Array(buffer[start..<scan])
        start = scan
        kind = nil
        depth = 0
        inString = false
        escaped = false
        return message
    }
}

private func isWhitespace(_ byte: UInt8) -> Bool {
    byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
}

private func isStructural(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "{"), UInt8(ascii: "}"), UInt8(ascii: "["), UInt8(ascii: "]"),
        UInt8(ascii: "\""), UInt8(ascii: ","), UInt8(ascii: ":"):
        return true
    default:
        return false
    }
}
