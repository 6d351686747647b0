// Sizes as QEMU writes them (util/cutils.c, qemu_strtosz): a decimal number, optionally with
// a fraction ("1.5"), or a hexadecimal integer ("0x1000"), followed by an optional one-letter
// suffix B, K, M, G or T (either case, powers of 1024). Without a suffix the number is in
// `defaultUnit`: MiB for -m, bytes for -object ...,size=.

enum SizeParser {
    /// The size in bytes, or nil when `text` is not a size or the size does not fit in 64 bits.
    /// A fraction is truncated to whole bytes; a fraction of a byte ("1.5B") is refused, as QEMU does.
    static func parse(_ text: String, defaultUnit: UInt64) -> UInt64? {
        let bytes = Array(text.utf8)
        var index = 0
        var whole: UInt64 = 0
        var digitCount = 0
        let isHex = bytes.count > 2 && bytes[0] == UInt8(ascii: "0") && (bytes[1] | 0x20) == UInt8(ascii: "x")
        let radix: UInt64 = isHex ? 16 : 10
        if isHex { index = 2 }
        while index < bytes.count, let digit = digitValue(bytes[index], radix: radix) {
            let (shifted, overflow1) = whole.multipliedReportingOverflow(by: radix)
            let (sum, overflow2) = shifted.addingReportingOverflow(digit)
            if overflow1 || overflow2 { return nil }
            whole = sum
            index += 1
            digitCount += 1
        }
        guard digitCount > 0 else { return nil }

        // The fraction as numerator / denominator; digits past the 18th cannot matter.
        var numerator: UInt64 = 0
        var denominator: UInt64 = 1
        if !isHex, index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            var fractionDigits = 0
            while index < bytes.count, let digit = digitValue(bytes[index], radix: 10) {
                if fractionDigits < 18 {
                    numerator = numerator * 10 + digit
                    denominator *= 10
                }
                fractionDigits += 1
                index += 1
            }
            guard fractionDigits > 0 else { return nil }
        }

        var unit = defaultUnit
        if index < bytes.count {
            guard let multiplier = suffixUnit(bytes[index]) else { return nil }
            unit = multiplier
            index += 1
        }
        guard index == bytes.count else { return nil }
        if numerator != 0 && unit == 1 { return nil }

        let (wholeBytes, overflow) = whole.multipliedReportingOverflow(by: unit)
        if overflow { return nil }
        // numerator < denominator, so the quotient is below `unit` and cannot overflow.
        let (fractionBytes, _) = denominator.dividingFullWidth(numerator.multipliedFullWidth(by: unit))
        let (total, overflow2) = wholeBytes.addingReportingOverflow(fractionBytes)
        return overflow2 ? nil : total
    }

    /// A size for messages: "4 KiB", "1536 MiB", "1 TiB", or "12345 bytes" when no binary
    /// unit divides it exactly.
    static func describe(_ size: UInt64) -> String {
        if size != 0 {
            for (unit, name) in [(UInt64(1) << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
            where size % unit == 0 {
                return "\(size / unit) \(name)"
            }
        }
        return size == 1 ? "1 byte" : "\(size) bytes"
    }

    private static func digitValue(_ byte: UInt8, radix: UInt64) -> UInt64? {
        let value: UInt64
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): value = UInt64(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): value = UInt64(byte - UInt8(ascii: "a")) + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): value = UInt64(byte - UInt8(ascii: "A")) + 10
        default: return nil
        }
        return value < radix ? value : nil
    }

    private static func suffixUnit(_ byte: UInt8) -> UInt64? {
        switch byte | 0x20 {  // ASCII lower case
        case UInt8(ascii: "b"): return 1
        case UInt8(ascii: "k"): return 1 << 10
        case UInt8(ascii: "m"): return 1 << 20
        case UInt8(ascii: "g"): return 1 << 30
        case UInt8(ascii: "t"): return 1 << 40
        default: return nil
        }
    }
}
