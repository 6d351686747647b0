import Testing

@testable import cprctl

@Suite struct FormattingTests {
    @Test(
        arguments: [
            (0, "0ms"),
            (850, "850ms"),
            (999, "999ms"),
            (1000, "1s"),
            (1999, "1s"),
            (42_000, "42s"),
            (60_000, "1min"),
            (303_000, "5min 3s"),
            (3_599_999, "59min 59s"),
            (3_600_000, "1h"),
            (3_660_000, "1h 1min"),
            (3_601_000, "1h"),  // the seconds are below the second unit shown
            (86_400_000, "1d"),
            (273_600_000, "3d 4h"),
            (86_400_000 + 60_000, "1d"),
            (400 * 86_400_000, "400d"),
            (-5, "0ms"),
        ] as [(Int64, String)])
    func durations(milliseconds: Int64, expected: String) {
        #expect(Formatting.duration(milliseconds: milliseconds) == expected)
    }

    @Test(
        arguments: [
            (0, "0 B"),
            (1000, "1000 B"),
            (1024, "1 KiB"),
            (65536, "64 KiB"),
            (1 << 20, "1 MiB"),
            (512 << 20, "512 MiB"),
            (1536 << 20, "1536 MiB"),
            (1 << 30, "1 GiB"),
            (3 << 29, "1536 MiB"),
            (16 << 30, "16 GiB"),
            (2 << 40, "2 TiB"),
            (12345, "12.1 KiB"),
            ((1 << 30) + 4096, "1.0 GiB"),
            ((1 << 30) + (1 << 29) + 1, "1.5 GiB"),
            (10000 << 20, "9.8 GiB"),
            (UInt64.max, "16777216.0 TiB"),
        ] as [(UInt64, String)])
    func sizes(bytes: UInt64, expected: String) {
        #expect(Formatting.size(bytes: bytes) == expected)
    }

    @Test func utcTimes() {
        #expect(Formatting.utcTime(unixSeconds: 0) == "1970-01-01 00:00:00 UTC")
        #expect(Formatting.utcTime(unixSeconds: 1795786801.123) == "2026-11-27 13:40:01 UTC")
        #expect(Formatting.utcTime(unixSeconds: 1795786801.999) == "2026-11-27 13:40:01 UTC")
        #expect(Formatting.utcTime(unixSeconds: -1) == "1969-12-31 23:59:59 UTC")
        #expect(Formatting.utcTime(unixSeconds: .nan) == "(invalid time)")
        #expect(Formatting.utcTime(unixSeconds: 1e300) == "(invalid time)")
    }

    @Test func nowIsTheWallClock() {
        #expect(Formatting.now() > 1_700_000_000)
    }
}
