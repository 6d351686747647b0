/// A guest-physical address. A distinct type so host pointers, offsets and guest addresses
/// cannot be mixed up; arithmetic is checked because a guest controls many of these values.
public struct GuestAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let raw: UInt64

    public init(_ raw: UInt64) { self.raw = raw }

    /// nil on overflow: a guest-supplied address plus a length must never wrap around.
    public func adding(_ offset: UInt64) -> GuestAddress? {
        let (sum, overflow) = raw.addingReportingOverflow(offset)
        return overflow ? nil : GuestAddress(sum)
    }

    /// The distance from `base` to self; nil when self lies below `base`.
    public func offset(from base: GuestAddress) -> UInt64? {
        raw >= base.raw ? raw - base.raw : nil
    }

    public static func < (a: GuestAddress, b: GuestAddress) -> Bool { a.raw < b.raw }

    public var description: String { "0x" + String(raw, radix: 16) }
}
