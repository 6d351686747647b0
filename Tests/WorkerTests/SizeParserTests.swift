import Testing
@testable import Worker

@Suite struct SizeParserTests {
    static let KiB: UInt64 = 1 << 10
    static let MiB: UInt64 = 1 << 20
    static let GiB: UInt64 = 1 << 30
    static let TiB: UInt64 = 1 << 40

    @Test(arguments: [
        ("512", 512 * MiB),
        ("0", 0),
        ("1G", GiB),
        ("1g", GiB),
        ("1.5G", 3 * GiB / 2),
        ("1.5", 3 * MiB / 2),
        ("4K", 4 * KiB),
        ("4k", 4 * KiB),
        ("256M", 256 * MiB),
        ("2T", 2 * TiB),
        ("4096B", 4096),
        ("4096b", 4096),
        ("0x10", 16 * MiB),
        ("0X10M", 16 * MiB),
        ("0x1000B", 0x1000B * MiB),  // "B" is a hex digit here: 0x1000B MiB, as in QEMU
        ("0.5K", 512),
        ("1.0B", 1),
        ("007", 7 * MiB),
    ] as [(String, UInt64)])
    func sizesInMiBByDefault(text: String, expected: UInt64) {
        #expect(SizeParser.parse(text, defaultUnit: Self.MiB) == expected)
    }

    @Test(arguments: [
        ("4096", UInt64(4096)),
        ("1073741824", GiB),
        ("1G", GiB),
        ("16M", 16 * MiB),
        ("1.5K", 1536),
    ] as [(String, UInt64)])
    func sizesInBytesByDefault(text: String, expected: UInt64) {
        #expect(SizeParser.parse(text, defaultUnit: 1) == expected)
    }

    @Test(arguments: [
        "", "12Q", "G", "-1", "+1", " 1G", "1G ", "1 G", "1GB", "1KiB", "1.5.5G", ".5G", "1.G", "1.5B",
        "0x", "0x1.5G", "1e3", "1P", "1E", "abc", "1,5G", "１G",
    ])
    func invalidSizes(text: String) {
        #expect(SizeParser.parse(text, defaultUnit: Self.MiB) == nil)
    }

    @Test func fractionOfAByteIsRefusedWithoutSuffixInBytes() {
        #expect(SizeParser.parse("1.5", defaultUnit: 1) == nil)
        #expect(SizeParser.parse("1.0", defaultUnit: 1) == 1)
    }

    @Test func fractionIsTruncatedToWholeBytes() {
        #expect(SizeParser.parse("0.3333K", defaultUnit: 1) == 341)  // 341.29...
        #expect(SizeParser.parse("1.0000000000000000000000001K", defaultUnit: 1) == 1024)
    }

    @Test func largestSizes() {
        #expect(SizeParser.parse("18446744073709551615", defaultUnit: 1) == UInt64.max)
        #expect(SizeParser.parse("0xffffffffffffffff", defaultUnit: 1) == UInt64.max)
        #expect(SizeParser.parse("16777215T", defaultUnit: 1) == 16_777_215 * Self.TiB)
        #expect(SizeParser.parse("16777215.5T", defaultUnit: 1) == 16_777_215 * Self.TiB + Self.TiB / 2)
    }

    @Test(arguments: [
        "18446744073709551616",  // UInt64.max + 1
        "0x10000000000000000",
        "16777216T",  // 2^64
        "17179869184G",
        "18446744073709551615K",
        "99999999999999999999999",
    ])
    func overflowIsNil(text: String) {
        #expect(SizeParser.parse(text, defaultUnit: 1) == nil)
    }

    @Test func overflowThroughDefaultUnit() {
        #expect(SizeParser.parse("17592186044416", defaultUnit: Self.MiB) == nil)  // 2^44 MiB = 2^64
        #expect(SizeParser.parse("17592186044415", defaultUnit: Self.MiB) == 17_592_186_044_415 * Self.MiB)
    }

    @Test(arguments: [
        (UInt64(0), "0 bytes"),
        (1, "1 byte"),
        (3000, "3000 bytes"),
        (3 * KiB, "3 KiB"),
        (512 * MiB, "512 MiB"),
        (3 * GiB / 2, "1536 MiB"),
        (GiB, "1 GiB"),
        (TiB, "1 TiB"),
        (TiB + KiB, "1073741825 KiB"),
    ] as [(UInt64, String)])
    func describe(size: UInt64, expected: String) {
        #expect(SizeParser.describe(size) == expected)
    }
}
