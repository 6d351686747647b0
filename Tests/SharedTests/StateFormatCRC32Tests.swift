import Testing

@testable import Shared

@Suite struct StateFormatCRC32Tests {
    /// Bit-at-a-time CRC-32, straight from the definition, to check the table-driven one.
    static func reference(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    @Test(arguments: [
        ("", UInt32(0)),
        ("a", 0xE8B7_BE43),
        ("abc", 0x3524_41C2),
        ("123456789", 0xCBF4_3926),
        ("The quick brown fox jumps over the lazy dog", 0x414F_A339),
    ])
    func knownVectors(text: String, expected: UInt32) {
        #expect(CRC32.checksum(Array(text.utf8)) == expected)
    }

    @Test func matchesReferenceAtEveryLengthAndAlignment() {
        var generator = SplitMix(seed: 7)
        let data = (0..<300).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        data.withUnsafeBytes { all in
            for start in 0..<9 {
                for length in stride(from: 0, through: 290, by: 7) {
                    let slice = UnsafeRawBufferPointer(rebasing: all[start..<start + length])
                    #expect(CRC32.checksum(slice) == Self.reference(Array(slice)), "start \(start) length \(length)")
                }
            }
        }
    }

    @Test func incrementalEqualsOneShot() {
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        for split in [0, 1, 7, 8, 9, 500, 999, 1000] {
            var crc = CRC32()
            crc.update(Array(data[..<split]))
            crc.update(Array(data[split...]))
            #expect(crc.value == CRC32.checksum(data))
        }
        #expect(CRC32().value == 0)
    }

    /// Prints the throughput (no assertion: debug builds and shared CI machines vary).
    @Test func throughput() {
        let size = 32 << 20
        let data = [UInt8](repeating: 0x5A, count: size)
        let clock = ContinuousClock()
        var result: UInt32 = 0
        let elapsed = clock.measure {
            for _ in 0..<2 { result ^= CRC32.checksum(data) }
        }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let megabytes = Double(2 * size) / 1_048_576
        print("CRC32 throughput: \(Int(megabytes / seconds)) MiB/s (\(Int(megabytes)) MiB, result \(result))")
        #expect(result == 0)  // the same checksum twice cancels out
    }
}

/// A small deterministic generator so test data is the same on every run.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
