import CLinux
import Glibc

/// The pages of one RAM block that cprvmm's own devices wrote (disk reads, received frames,
/// used rings, status bytes). KVM's dirty log sees only the guest's writes; a pre-copy
/// migration merges this bitmap in so a page a device filled after it was sent travels again.
///
/// Always on: one relaxed atomic OR per page a device writes costs less than deciding whether
/// a migration is running. A device marks a page *after* its bytes are in place, so a
/// migration that takes the mark reads the new bytes (a mark taken early would let a page be
/// sent before the write and never again).
final class DeviceWrites {
    static let pageShift = 12
    private let words: UnsafeMutablePointer<UInt64>
    let pageCount: Int
    var wordCount: Int { (pageCount + 63) / 64 }

    init(blockSize: UInt64) {
        pageCount = Int((blockSize + 4095) >> UInt64(DeviceWrites.pageShift))
        let count = (pageCount + 63) / 64
        words = .allocate(capacity: max(count, 1))
        words.initialize(repeating: 0, count: max(count, 1))
    }

    deinit { words.deallocate() }

    /// Marks the pages of [offset, offset + count) as written.
    func mark(offset: Int, count: Int) {
        guard count > 0 else { return }
        let first = offset >> DeviceWrites.pageShift
        let last = min((offset + count - 1) >> DeviceWrites.pageShift, pageCount - 1)
        guard first <= last else { return }
        for page in first...last {
            clinux_atomic_or_u64(words + page / 64, UInt64(1) << UInt64(page % 64))
        }
    }

    /// Takes word `index` (pages 64·index ... 64·index + 63) and clears it.
    func take(word index: Int) -> UInt64 {
        clinux_atomic_exchange_u64(words + index, 0)
    }
}
