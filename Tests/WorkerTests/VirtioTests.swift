import Foundation
import Glibc
import Shared
import Testing

@testable import Worker

/// 1 MiB of guest RAM at 0 and a driver's view of one split virtqueue in it: descriptor
/// table at 0x1000, available ring at 0x2000, used ring at 0x3000, buffers from 0x10000.
private final class Ring {
    let memory: GuestMemory
    var queue = Virtqueue()
    private var availIndex: UInt16 = 0

    init(size: UInt16 = 8) throws {
        let block = try RamBlock.anonymous(name: "test", size: 1 << 20)
        memory = try GuestMemory(regions: [GuestRegion(start: GuestAddress(0), size: 1 << 20, block: block, blockOffset: 0, readOnly: false)])
        queue.size = size
        queue.descriptorTable = 0x1000
        queue.availRing = 0x2000
        queue.usedRing = 0x3000
        queue.ready = true
    }

    func descriptor(_ index: UInt16, address: UInt64, length: UInt32, flags: UInt16 = 0, next: UInt16 = 0) throws {
        let base = GuestAddress(0x1000 + 16 * UInt64(index))
        try memory.store(address, at: base)
        try memory.store(length, at: base.adding(8)!)
        try memory.store(flags, at: base.adding(12)!)
        try memory.store(next, at: base.adding(14)!)
    }

    /// Makes `head` available to the device.
    func offer(_ head: UInt16) throws {
        try memory.store(head, at: GuestAddress(0x2004 + 2 * UInt64(availIndex % queue.size)))
        availIndex &+= 1
        try memory.store(availIndex, at: GuestAddress(0x2002))
    }

    func used(_ slot: Int) throws -> (id: UInt32, length: UInt32) {
        (try memory.load(UInt32.self, at: GuestAddress(0x3004 + 8 * UInt64(slot))), try memory.load(UInt32.self, at: GuestAddress(0x3008 + 8 * UInt64(slot))))
    }

    var usedIndex: UInt16 { (try? memory.load(UInt16.self, at: GuestAddress(0x3002))) ?? 0 }
}

@Suite struct VirtqueueTests {
    let next = Virtqueue.descriptorFlagNext, write = Virtqueue.descriptorFlagWrite

    @Test("a chain is walked in order, split into device-readable and device-writable buffers")
    func chain() throws {
        let ring = try Ring()
        try ring.descriptor(3, address: 0x10000, length: 16, flags: next, next: 5)
        try ring.descriptor(5, address: 0x11000, length: 512, flags: next | write, next: 0)
        try ring.descriptor(0, address: 0x12000, length: 1, flags: write)
        try ring.offer(3)
        let chain = try #require(try ring.queue.pop(ring.memory))
        #expect(chain.head == 3)
        #expect(chain.readable.map(\.address) == [0x10000])
        #expect(chain.writable.map(\.length) == [512, 1])
        let nothing = try ring.queue.pop(ring.memory)
        #expect(nothing == nil, "nothing more is available")
        let interrupt = try ring.queue.push(head: 3, written: 513, ring.memory)
        #expect(interrupt, "the driver did not suppress interrupts")
        #expect(try ring.used(0) == (3, 513))
        #expect(ring.usedIndex == 1)
    }

    @Test("malformed chains: a loop, a link past the queue, indirect, readable after writable", arguments: [
        "loop", "link", "indirect", "order",
    ])
    func badChains(kind: String) throws {
        let ring = try Ring()
        switch kind {
        case "loop":
            try ring.descriptor(0, address: 0x10000, length: 16, flags: next, next: 1)
            try ring.descriptor(1, address: 0x10000, length: 16, flags: next, next: 0)
        case "link":
            try ring.descriptor(0, address: 0x10000, length: 16, flags: next, next: 200)
        case "indirect":
            try ring.descriptor(0, address: 0x10000, length: 16, flags: Virtqueue.descriptorFlagIndirect)
        default:
            try ring.descriptor(0, address: 0x10000, length: 16, flags: next | write, next: 1)
            try ring.descriptor(1, address: 0x11000, length: 16)
        }
        try ring.offer(0)
        #expect(throws: Virtqueue.Failure.self) { try ring.queue.pop(ring.memory) }
        #expect(ring.queue.nextAvail == 1, "the bad chain is consumed, so it can be returned with an error")
        let nothing = try ring.queue.pop(ring.memory)
        #expect(nothing == nil)
    }

    @Test("a head beyond the queue, an index that jumps, and rings outside RAM are queue failures")
    func badRings() throws {
        let ring = try Ring()
        try ring.offer(9)
        #expect(throws: Virtqueue.Failure.headOutOfRange(9)) { try ring.queue.pop(ring.memory) }
        try ring.memory.store(UInt16(100), at: GuestAddress(0x2002))
        #expect(throws: Virtqueue.Failure.availIndexJump(100)) { try ring.queue.pending(ring.memory) }
        var outside = ring.queue
        outside.availRing = 1 << 30
        #expect(throws: Virtqueue.Failure.ringOutsideRAM(1 << 30 + 2)) { try outside.pending(ring.memory) }
        #expect(outside.validate(ring.memory) != nil)
        outside.availRing = 0x2001
        #expect(outside.validate(ring.memory) == "misaligned ring addresses")
        outside.availRing = 0x2000
        outside.size = 3
        #expect(outside.validate(ring.memory)?.contains("not a power of two") == true)
    }

    @Test("NO_INTERRUPT in the available ring suppresses the interrupt")
    func noInterrupt() throws {
        let ring = try Ring()
        try ring.descriptor(0, address: 0x10000, length: 1, flags: write)
        try ring.offer(0)
        try ring.memory.store(Virtqueue.availFlagNoInterrupt, at: GuestAddress(0x2000))
        let chain = try #require(try ring.queue.pop(ring.memory))
        let interrupt = try ring.queue.push(head: chain.head, written: 1, ring.memory)
        #expect(!interrupt)
    }
}

@Suite struct VirtioRegistersTests {
    static let offered = VirtioPciTransport.featureVersion1 | VirtioBlock.featureFlush

    func fresh() throws -> (VirtioRegisters, GuestMemory) {
        var registers = VirtioRegisters()
        registers.reset(queues: 1)
        return (registers, try Ring().memory)
    }

    @Test("feature words are selected; FEATURES_OK sticks only for offered features with VERSION_1")
    func features() throws {
        var (registers, memory) = try fresh()
        _ = registers.writeCommon(0x00, size: 4, value: 1, offered: Self.offered, memory: memory)
        #expect(registers.readCommon(0x04, size: 4, offered: Self.offered) == 1, "VERSION_1 is bit 32")
        _ = registers.writeCommon(0x08, size: 4, value: 0, offered: Self.offered, memory: memory)
        _ = registers.writeCommon(0x0C, size: 4, value: 1 << 9 | 1 << 20, offered: Self.offered, memory: memory)
        _ = registers.writeCommon(0x08, size: 4, value: 1, offered: Self.offered, memory: memory)
        _ = registers.writeCommon(0x0C, size: 4, value: 1, offered: Self.offered, memory: memory)
        _ = registers.writeCommon(0x14, size: 1, value: 0x0B, offered: Self.offered, memory: memory)
        #expect(registers.status & VirtioPciTransport.statusFeaturesOK == 0, "bit 20 was never offered")
        _ = registers.writeCommon(0x08, size: 4, value: 0, offered: Self.offered, memory: memory)
        _ = registers.writeCommon(0x0C, size: 4, value: 1 << 9, offered: Self.offered, memory: memory)
        _ = registers.writeCommon(0x14, size: 1, value: 0x0B, offered: Self.offered, memory: memory)
        #expect(registers.status == 0x0B)
        #expect(registers.writeCommon(0x14, size: 1, value: 0x0F, offered: Self.offered, memory: memory) == .started)
        #expect(registers.writeCommon(0x14, size: 1, value: 0, offered: Self.offered, memory: memory) == .reset)
    }

    @Test("queue setup as SeaBIOS does it; an enabled queue is fixed; a bad one needs a reset")
    func queueSetup() throws {
        var (registers, memory) = try fresh()
        #expect(registers.readCommon(0x18, size: 2, offered: 0) == 256)
        _ = registers.writeCommon(0x18, size: 2, value: 128, offered: 0, memory: memory)
        _ = registers.writeCommon(0x20, size: 4, value: 0x1000, offered: 0, memory: memory)
        _ = registers.writeCommon(0x24, size: 4, value: 0, offered: 0, memory: memory)
        _ = registers.writeCommon(0x28, size: 4, value: 0x2000, offered: 0, memory: memory)
        _ = registers.writeCommon(0x30, size: 8, value: 0x3000, offered: 0, memory: memory)
        #expect(registers.writeCommon(0x1C, size: 2, value: 1, offered: 0, memory: memory) == .none)
        #expect(registers.readCommon(0x1C, size: 2, offered: 0) == 1)
        _ = registers.writeCommon(0x20, size: 4, value: 0x5000, offered: 0, memory: memory)
        #expect(registers.readCommon(0x20, size: 4, offered: 0) == 0x1000, "fixed once enabled")
        #expect(registers.readCommon(0x12, size: 2, offered: 0) == 1)
        _ = registers.writeCommon(0x16, size: 2, value: 7, offered: 0, memory: memory)
        #expect(registers.readCommon(0x18, size: 2, offered: 0) == 0, "no queue 7")

        var (bad, _) = try fresh()
        _ = bad.writeCommon(0x20, size: 8, value: 1 << 40, offered: 0, memory: memory)
        if case .invalidQueue = bad.writeCommon(0x1C, size: 2, value: 1, offered: 0, memory: memory) {} else { Issue.record("accepted a ring outside RAM") }
        #expect(bad.status & VirtioPciTransport.statusNeedsReset != 0)
    }
}

@Suite struct MsixTableTests {
    @Test("vectors start masked; address, data and the mask bit are writable; the PBA is read-only")
    func table() {
        var table = MsixTable(vectors: 2)
        #expect(table.masked(0) && table.masked(1))
        table.write(offset: 16, size: 8, value: 0x1_FEE0_0000)
        table.write(offset: 24, size: 4, value: 0x41)
        table.write(offset: 28, size: 4, value: 0xFFFF_FFFE)
        #expect(!table.masked(1))
        #expect(table.message(1) == (0x1_FEE0_0000, 0x41))
        table.setPending(0, true)
        #expect(table.read(offset: 0x800, size: 8) == 1)
        table.write(offset: 0x800, size: 8, value: 0)
        #expect(table.pending(0))
        var copy = MsixTable(vectors: 2)
        let restored = copy.restore(words: table.words)
        #expect(restored && copy == table)
        let short = copy.restore(words: [1, 2, 3])
        #expect(!short)
    }
}

@Suite struct VirtioBlockTests {
    /// A 64 KiB image whose sector k starts with the byte k.
    static func image(readOnly: Bool = false) throws -> BlockImage {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-blk-\(UUID().uuidString)").path
        var bytes = [UInt8](repeating: 0, count: 64 << 10)
        for sector in 0..<128 { bytes[sector * 512] = UInt8(sector) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        var drive = DriveConfig(id: "d0", path: path)
        drive.readOnly = readOnly
        let image = try BlockImage(drive, inherited: nil)
        unlink(path)
        return image
    }

    /// Serves one request: a 16-byte header at 0x10000, data at 0x11000, status at 0x12000.
    static func request(_ block: VirtioBlock, type: UInt32, sector: UInt64, dataLength: UInt32, dataWritable: Bool,
                        prepare: (GuestMemory) throws -> Void = { _ in }) throws -> (status: UInt8, written: UInt32, memory: GuestMemory) {
        let ring = try Ring()
        try ring.memory.store(type, at: GuestAddress(0x10000))
        try ring.memory.store(sector, at: GuestAddress(0x10008))
        try ring.memory.store(UInt8(0xEE), at: GuestAddress(0x12000))
        try prepare(ring.memory)
        var buffers = [Virtqueue.Buffer(address: 0x10000, length: 16, deviceWrites: false)]
        if dataLength > 0 { buffers.append(.init(address: 0x11000, length: dataLength, deviceWrites: dataWritable)) }
        buffers.append(.init(address: 0x12000, length: 1, deviceWrites: true))
        let written = block.serve(Virtqueue.Chain(head: 0, buffers: buffers), queue: 0, memory: ring.memory)
        return (try ring.memory.load(UInt8.self, at: GuestAddress(0x12000)), written, ring.memory)
    }

    @Test("reads, writes, flushes and GET_ID")
    func requests() throws {
        let block = VirtioBlock(image: try Self.image(), serial: "disk-serial")
        let read = try Self.request(block, type: VirtioBlock.requestIn, sector: 5, dataLength: 1024, dataWritable: true)
        #expect(read.status == VirtioBlock.statusOK && read.written == 1025)
        #expect(try read.memory.load(UInt8.self, at: GuestAddress(0x11000)) == 5)
        #expect(try read.memory.load(UInt8.self, at: GuestAddress(0x11200)) == 6)
        let write = try Self.request(block, type: VirtioBlock.requestOut, sector: 7, dataLength: 512, dataWritable: false) {
            try $0.store(UInt8(0x77), at: GuestAddress(0x11000))
        }
        #expect(write.status == VirtioBlock.statusOK && write.written == 1)
        let back = try Self.request(block, type: VirtioBlock.requestIn, sector: 7, dataLength: 512, dataWritable: true)
        #expect(try back.memory.load(UInt8.self, at: GuestAddress(0x11000)) == 0x77)
        #expect(try Self.request(block, type: VirtioBlock.requestFlush, sector: 0, dataLength: 0, dataWritable: false).status == VirtioBlock.statusOK)
        let id = try Self.request(block, type: VirtioBlock.requestGetID, sector: 0, dataLength: 20, dataWritable: true)
        #expect(id.status == VirtioBlock.statusOK)
        #expect(String(decoding: try id.memory.read(at: GuestAddress(0x11000), count: 11), as: UTF8.self) == "disk-serial")
    }

    @Test("hostile requests get an error status and touch nothing", arguments: [
        ("beyond the end", VirtioBlock.requestIn, UInt64(127), UInt32(1024), true, VirtioBlock.statusIOError),
        ("sector overflow", VirtioBlock.requestIn, UInt64.max, UInt32(512), true, VirtioBlock.statusIOError),
        ("partial sector", VirtioBlock.requestIn, UInt64(0), UInt32(100), true, VirtioBlock.statusIOError),
        ("read into a readable buffer", VirtioBlock.requestIn, UInt64(0), UInt32(512), false, VirtioBlock.statusIOError),
        ("unknown type", UInt32(99), UInt64(0), UInt32(0), false, VirtioBlock.statusUnsupported),
    ])
    func hostile(what: String, type: UInt32, sector: UInt64, length: UInt32, writable: Bool, expected: UInt8) throws {
        let block = VirtioBlock(image: try Self.image(), serial: "d0")
        let result = try Self.request(block, type: type, sector: sector, dataLength: length, dataWritable: writable)
        #expect(result.status == expected, "\(what)")
        #expect(result.written == 1, "\(what): only the status byte")
    }

    @Test("a write to a read-only drive fails; RO is offered")
    func readOnly() throws {
        let block = VirtioBlock(image: try Self.image(readOnly: true), serial: "d0")
        #expect(block.features & VirtioBlock.featureReadOnly != 0)
        #expect(try Self.request(block, type: VirtioBlock.requestOut, sector: 0, dataLength: 512, dataWritable: false).status == VirtioBlock.statusIOError)
    }

    @Test("data outside guest RAM, and a chain without a status byte")
    func outsideRAM() throws {
        let block = VirtioBlock(image: try Self.image(), serial: "d0")
        let ring = try Ring()
        let chain = Virtqueue.Chain(head: 0, buffers: [
            .init(address: 0x10000, length: 16, deviceWrites: false),
            .init(address: 1 << 40, length: 512, deviceWrites: true),
            .init(address: 0x12000, length: 1, deviceWrites: true),
        ])
        #expect(block.serve(chain, queue: 0, memory: ring.memory) == 1)
        #expect(try ring.memory.load(UInt8.self, at: GuestAddress(0x12000)) == VirtioBlock.statusIOError)
        let noStatus = Virtqueue.Chain(head: 0, buffers: [.init(address: 0x10000, length: 16, deviceWrites: false)])
        #expect(block.serve(noStatus, queue: 0, memory: ring.memory) == 0)
    }

    @Test("the configuration space: capacity in sectors, seg_max, blk_size 512")
    func configSpace() throws {
        let block = VirtioBlock(image: try Self.image(), serial: "d0")
        var bytes = [UInt8](repeating: 0, count: 24)
        bytes.withUnsafeMutableBytes { block.readConfig(offset: 0, into: $0) }
        #expect(bytes[0] == 128 && bytes[1...7].allSatisfy { $0 == 0 })
        #expect(bytes[12] == 254)
        #expect(bytes[20] == 0 && bytes[21] == 2)
    }
}
