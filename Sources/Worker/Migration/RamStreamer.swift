import CLinux
import Shared

/// Writes guest RAM into a state stream, page by page: a full pass (every page that is not
/// zero: a fresh target's RAM reads as zero) and passes over the pages a dirty bitmap names,
/// where a page that became zero travels as a `ram.zero` marker instead of 4 KiB of zeros.
///
/// Pages go in runs of at most `Machine.ramChunkSize` bytes: one `ram.at` (block, offset,
/// length) and one `ram.data` section per run of non-zero pages, one `ram.zero` per run of
/// zero pages. The reader (StateLoader) places each run straight into its RAM block.
final class RamStreamer {
    static let zeroSection = "ram.zero"
    static let zeroSectionVersion: UInt32 = 1
    static let pageSize = DirtyPageLog.pageSize
    static let pagesPerRun = Machine.ramChunkSize / pageSize

    /// QEMU's ram counters (query-migrate): pages sent with their bytes, zero pages.
    struct Counters {
        var normalPages: UInt64 = 0
        var zeroPages: UInt64 = 0
        /// Pages a pass went over so far, sent or not (progress within a pass).
        var visitedPages: UInt64 = 0
        var normalBytes: UInt64 { normalPages * UInt64(RamStreamer.pageSize) }
    }

    private let writer: StateWriter
    /// The blocks sent, with their index in the machine's block list (what `ram.at` names).
    let blocks: [(index: Int, block: RamBlock)]
    private(set) var counters = Counters()
    /// Called after every run with the stream's bytes so far: it may sleep (bandwidth limit)
    /// or throw (a cancelled migration).
    var pace: (UInt64) throws -> Void = { _ in }

    /// Where a run is copied before it goes, when the guest runs meanwhile (nil: it is paused).
    private let snapshot: UnsafeMutableRawBufferPointer?

    /// `guestRuns`: the guest may write RAM while it is sent (pre-copy), so each run is copied
    /// first; a paused guest's RAM goes straight from its mapping.
    init(writer: StateWriter, blocks: [(index: Int, block: RamBlock)], guestRuns: Bool) {
        self.writer = writer
        self.blocks = blocks
        snapshot = guestRuns ? .allocate(byteCount: Machine.ramChunkSize, alignment: 64) : nil
    }

    deinit { snapshot?.deallocate() }

    /// Every page of every block that is not zero.
    func sendAll() throws {
        for entry in blocks {
            let pages = Int((entry.block.size + UInt64(RamStreamer.pageSize) - 1) / UInt64(RamStreamer.pageSize))
            try send(entry, pages: pages, isDirty: { _ in true }, zeroMarkers: false)
        }
    }

    /// The pages `bitmaps` names (one per block, in `blocks` order; bit p = page p). Zero pages
    /// go as markers unless `zeroMarkers` is false (a first pass: the target's RAM is zero).
    /// `prepare(block, word)` runs before any page of that word is read (DirtyPageLog's
    /// deferred protection); `block` indexes `blocks`.
    func send(dirty bitmaps: [[UInt64]], zeroMarkers: Bool = true, prepare: (Int, Int) throws -> Void = { _, _ in }) throws {
        for (index, (entry, bitmap)) in zip(blocks, bitmaps).enumerated() {
            let pages = Int((entry.block.size + UInt64(RamStreamer.pageSize) - 1) / UInt64(RamStreamer.pageSize))
            try bitmap.withUnsafeBufferPointer { words in
                try send(entry, pages: pages, isDirty: { words[$0 / 64] & (1 << UInt64($0 % 64)) != 0 },
                         skipWord: { words[$0 / 64] == 0 }, zeroMarkers: zeroMarkers, prepare: { try prepare(index, $0) })
            }
        }
    }

    /// Pages set in `bitmaps`, in all.
    static func count(_ bitmaps: [[UInt64]]) -> UInt64 {
        bitmaps.reduce(0) { total, words in words.reduce(total) { $0 + UInt64($1.nonzeroBitCount) } }
    }

    private func send(_ entry: (index: Int, block: RamBlock), pages: Int, isDirty: (Int) -> Bool,
                      skipWord: (Int) -> Bool = { _ in false }, zeroMarkers: Bool, prepare: (Int) throws -> Void = { _ in }) throws {
        let block = entry.block
        var preparedWord = -1
        // Pages are read in increasing order: each word is prepared once, before its first read.
        func isZero(_ page: Int) throws -> Bool {
            if page / 64 != preparedWord {
                preparedWord = page / 64
                try prepare(preparedWord)
            }
            return clinux_is_zero(block.host + page * RamStreamer.pageSize, pageBytes(page, block)) != 0
        }
        var page = 0
        while page < pages {
            if page % 64 == 0 && skipWord(page) {
                counters.visitedPages += UInt64(min(64, pages - page))
                page += 64
                continue
            }
            guard isDirty(page) else {
                counters.visitedPages += 1
                page += 1
                continue
            }
            let zero = try isZero(page)
            var end = page + 1
            while end < pages, end - page < RamStreamer.pagesPerRun, isDirty(end), try isZero(end) == zero { end += 1 }
            let offset = page * RamStreamer.pageSize
            let length = (page..<end).reduce(0) { $0 + pageBytes($1, block) }
            if zero {
                counters.zeroPages += UInt64(end - page)
                if zeroMarkers {
                    var marker = StateEncoder()
                    marker.u32(UInt32(entry.index))
                    marker.u64(UInt64(offset))
                    marker.u64(UInt64(length))
                    try writer.writeSection(RamStreamer.zeroSection, version: RamStreamer.zeroSectionVersion, payload: marker.bytes)
                }
            } else {
                var header = StateEncoder()
                header.u32(UInt32(entry.index))
                header.u64(UInt64(offset))
                header.u32(UInt32(length))
                try writer.writeSection(Machine.ramHeaderSection, version: Machine.ramSectionVersion, payload: header.bytes)
                // A copy while the guest runs: it may write the page while it is sent, and the
                // section's CRC must cover exactly the bytes that go out. A page written
                // meanwhile is in the dirty log and goes again.
                var payload = UnsafeRawBufferPointer(start: block.host + offset, count: length)
                if let snapshot {
                    snapshot.baseAddress!.copyMemory(from: block.host + offset, byteCount: length)
                    payload = UnsafeRawBufferPointer(rebasing: snapshot[..<length])
                }
                try writer.writeSection(Machine.ramDataSection, version: Machine.ramSectionVersion, payload: payload)
                counters.normalPages += UInt64(end - page)
            }
            counters.visitedPages += UInt64(end - page)
            try pace(writer.bytesWritten)
            page = end
        }
    }

    /// A page's bytes: 4 KiB, less for the last page of a block whose size is not a multiple.
    private func pageBytes(_ page: Int, _ block: RamBlock) -> Int {
        min(RamStreamer.pageSize, Int(block.size) - page * RamStreamer.pageSize)
    }
}
