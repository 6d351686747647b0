/// CRC-32 as used by zlib, gzip, PNG and Ethernet (IEEE 802.3: reflected polynomial
/// 0xEDB88320, initial value and final XOR 0xFFFFFFFF), so `crc32` from zlib or Python's
/// `zlib.crc32` can check a state stream by hand.
///
/// Slicing-by-8: eight bytes per step through eight 256-entry tables, because this checksums
/// guest RAM during a normal-mode migration and a byte-at-a-time loop is several times slower.
public struct CRC32 {
    /// The checksum of everything passed to `update` so far (0 for no bytes).
    public private(set) var value: UInt32 = 0

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        value = CRC32.extend(value, bytes)
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        extend(0, bytes)
    }

    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { extend(0, $0) }
    }

    /// Table k (k = 0...7) at offset k*256: table 0 is the classic byte table; table k maps a
    /// byte to its CRC contribution when followed by k zero bytes.
    static let tables: [UInt32] = {
        var tables = [UInt32](repeating: 0, count: 8 * 256)
        for n in 0..<256 {
            var c = UInt32(n)
            for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            tables[n] = c
        }
        for k in 1..<8 {
            for n in 0..<256 {
                let previous = tables[(k - 1) * 256 + n]
                tables[k * 256 + n] = (previous >> 8) ^ tables[Int(previous & 0xFF)]
            }
        }
        return tables
    }()

    static func extend(_ crcSoFar: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return crcSoFar }
        var crc = ~crcSoFar
        // Unchecked table reads: every index below is masked to 0...255 plus a constant < 2048.
        tables.withUnsafeBufferPointer { table in
            let t = table.baseAddress!
            var offset = 0
            let count = bytes.count
            while count - offset >= 8 {
                // Unaligned 8-byte load: `bytes` may start anywhere (a payload inside a larger buffer).
                let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) ^ UInt64(crc)
                crc =
                    t[7 * 256 + Int(word & 0xFF)] ^ t[6 * 256 + Int((word >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((word >> 16) & 0xFF)] ^ t[4 * 256 + Int((word >> 24) & 0xFF)]
                    ^ t[3 * 256 + Int((word >> 32) & 0xFF)] ^ t[2 * 256 + Int((word >> 40) & 0xFF)]
                    ^ t[1 * 256 + Int((word >> 48) & 0xFF)] ^ t[Int(word >> 56)]
                offset += 8
            }
            while offset < count {
                // In bounds: offset < count, and `base` points at `count` readable bytes.
                let byte = base.load(fromByteOffset: offset, as: UInt8.self)
                crc = t[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
                offset += 1
            }
        }
        return ~crc
    }
}
