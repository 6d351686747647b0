import Glibc

/// virtio-blk (virtio 1.x, 5.2): read, write, flush and get-id requests on a raw image.
/// Each request is checked against what a guest may legally send; anything else completes
/// with VIRTIO_BLK_S_IOERR or UNSUPP (logged, rate-limited), never touches memory outside
/// guest RAM and never reaches beyond the image.
final class VirtioBlock: VirtioDeviceModel {
    static let featureSegMax: UInt64 = 1 << 2
    static let featureReadOnly: UInt64 = 1 << 5
    static let featureBlockSize: UInt64 = 1 << 6
    static let featureFlush: UInt64 = 1 << 9
    static let requestIn: UInt32 = 0, requestOut: UInt32 = 1, requestFlush: UInt32 = 4, requestGetID: UInt32 = 8
    static let statusOK: UInt8 = 0, statusIOError: UInt8 = 1, statusUnsupported: UInt8 = 2
    static let headerSize = 16
    static let idSize = 20

    let image: BlockImage
    /// The serial number GET_ID returns (QEMU's `serial=`; the drive id here).
    let serial: [UInt8]
    private let errors = RateLimiter()
    /// Requests served and I/O errors, for `info block` and tests.
    private let counters = Lock()
    private var reads: UInt64 = 0, writes: UInt64 = 0, flushes: UInt64 = 0, failures: UInt64 = 0

    var statistics: (reads: UInt64, writes: UInt64, flushes: UInt64, failures: UInt64) {
        counters.withLock { (reads, writes, flushes, failures) }
    }

    init(image: BlockImage, serial: String) {
        self.image = image
        self.serial = Array(serial.utf8.prefix(VirtioBlock.idSize))
    }

    var deviceType: UInt16 { 2 }
    var pciClass: UInt32 { 0x01_0000 }
    var queueCount: Int { 1 }
    var features: UInt64 {
        VirtioBlock.featureSegMax | VirtioBlock.featureBlockSize | VirtioBlock.featureFlush
            | (image.readOnly ? VirtioBlock.featureReadOnly : 0)
    }

    /// capacity (sectors), size_max, seg_max, geometry, blk_size: 24 bytes.
    var configSize: Int { 24 }

    func readConfig(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        var bytes = [UInt8](repeating: 0, count: configSize)
        func put32(_ at: Int, _ value: UInt32) { for i in 0..<4 { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) } }
        let capacity = image.size / BlockImage.sectorSize
        put32(0, UInt32(truncatingIfNeeded: capacity))
        put32(4, UInt32(truncatingIfNeeded: capacity >> 32))
        put32(12, UInt32(Virtqueue.maxSize) - 2)  // seg_max: the header and status take two descriptors
        put32(20, UInt32(BlockImage.sectorSize))  // blk_size: SeaBIOS insists on 512
        for i in 0..<data.count { data[i] = offset + i < bytes.count ? bytes[offset + i] : 0 }
    }

    func serve(_ chain: Virtqueue.Chain, queue: Int, memory: GuestMemory) -> UInt32 {
        // The status byte is the last byte of the last device-writable buffer.
        guard let last = chain.buffers.last, last.deviceWrites, last.length >= 1,
              let statusAddress = GuestAddress(last.address).adding(UInt64(last.length) - 1),
              (try? memory.writableSlice(at: statusAddress, count: 1)) != nil else {
            errors.log("virtio-blk \(String(decoding: serial, as: UTF8.self)): request \(chain.head) has no writable status byte; returned unserved")
            return 0
        }
        var writable = chain.writable
        writable[writable.count - 1].length -= 1
        if writable[writable.count - 1].length == 0 { writable.removeLast() }
        let (status, written) = execute(chain, data: writable, memory: memory)
        try? memory.store(status, at: statusAddress)
        if status != VirtioBlock.statusOK { counters.withLock { failures += 1 } }
        return written + 1
    }

    private func fail(_ head: UInt16, _ why: String, _ status: UInt8 = VirtioBlock.statusIOError) -> (UInt8, UInt32) {
        errors.log("virtio-blk \(String(decoding: serial, as: UTF8.self)): request \(head): \(why)")
        return (status, 0)
    }

    /// Runs the request; returns its status and the bytes written into `data`.
    private func execute(_ chain: Virtqueue.Chain, data: [Virtqueue.Buffer], memory: GuestMemory) -> (UInt8, UInt32) {
        var readable = chain.readable
        guard let header = gather(&readable, count: VirtioBlock.headerSize, memory: memory) else {
            return fail(chain.head, "a header shorter than 16 bytes or outside guest RAM")
        }
        let type = header[0..<4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let sector = header[8..<16].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        switch type {
        case VirtioBlock.requestIn, VirtioBlock.requestOut:
            let reading = type == VirtioBlock.requestIn
            let buffers = reading ? data : readable
            if !reading && image.readOnly { return fail(chain.head, "a write to a read-only drive") }
            if reading && !readable.isEmpty { return fail(chain.head, "a read with device-readable data buffers") }
            let total = buffers.reduce(UInt64(0)) { $0 + UInt64($1.length) }
            guard total % BlockImage.sectorSize == 0 else { return fail(chain.head, "\(total) bytes is not a whole number of sectors") }
            let (start, overflow) = sector.multipliedReportingOverflow(by: BlockImage.sectorSize)
            guard !overflow, start <= image.size, total <= image.size - start else {
                return fail(chain.head, "sectors \(sector)+\(total / BlockImage.sectorSize) lie beyond the end of the \(image.size / BlockImage.sectorSize)-sector image")
            }
            var offset = start
            for buffer in buffers {
                let target: UnsafeMutableRawBufferPointer
                do {
                    target = reading
                        ? try memory.writableSlice(at: GuestAddress(buffer.address), count: Int(buffer.length))
                        : try memory.slice(at: GuestAddress(buffer.address), count: Int(buffer.length))
                } catch {
                    return fail(chain.head, "\(error)")
                }
                let done = reading ? image.read(into: target, at: offset) : image.write(from: UnsafeRawBufferPointer(target), at: offset)
                if reading { memory.deviceWrote(target) }
                guard done else { return fail(chain.head, "\(reading ? "reading" : "writing") \(image.path) at byte \(offset) failed: \(SystemError.describe(errno))") }
                offset += UInt64(buffer.length)
            }
            counters.withLock { if reading { reads += 1 } else { writes += 1 } }
            return (VirtioBlock.statusOK, reading ? UInt32(total) : 0)
        case VirtioBlock.requestFlush:
            guard image.flush() else { return fail(chain.head, "fdatasync of \(image.path) failed: \(SystemError.describe(errno))") }
            counters.withLock { flushes += 1 }
            return (VirtioBlock.statusOK, 0)
        case VirtioBlock.requestGetID:
            guard let buffer = data.first else { return fail(chain.head, "GET_ID without a buffer") }
            var id = serial + [UInt8](repeating: 0, count: VirtioBlock.idSize - serial.count)
            id = Array(id.prefix(Int(buffer.length)))
            do {
                let target = try memory.writableSlice(at: GuestAddress(buffer.address), count: id.count)
                target.copyBytes(from: id)
                memory.deviceWrote(target)
            } catch {
                return fail(chain.head, "\(error)")
            }
            return (VirtioBlock.statusOK, UInt32(id.count))
        default:
            return fail(chain.head, "request type \(type) is not supported", VirtioBlock.statusUnsupported)
        }
    }

    /// The first `count` bytes of the readable buffers (a header may span several), which are
    /// consumed from `buffers`; nil if they hold fewer or lie outside RAM.
    private func gather(_ buffers: inout [Virtqueue.Buffer], count: Int, memory: GuestMemory) -> [UInt8]? {
        var bytes: [UInt8] = []
        while bytes.count < count, !buffers.isEmpty {
            let take = min(Int(buffers[0].length), count - bytes.count)
            guard let part = try? memory.read(at: GuestAddress(buffers[0].address), count: take) else { return nil }
            bytes += part
            if take == Int(buffers[0].length) {
                buffers.removeFirst()
            } else {
                buffers[0].address &+= UInt64(take)
                buffers[0].length -= UInt32(take)
            }
        }
        return bytes.count == count ? bytes : nil
    }
}
