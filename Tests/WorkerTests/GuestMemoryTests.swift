import Testing
@testable import Worker

@Suite struct GuestMemoryTests {
    /// Two regions with a hole between them, like RAM below 3 GiB and above 4 GiB.
    static func makeMemory() throws -> GuestMemory {
        let low = try RamBlock.anonymous(name: "low", size: 0x10000)
        let high = try RamBlock.anonymous(name: "high", size: 0x10000)
        return try GuestMemory(regions: [
            GuestRegion(start: GuestAddress(0), size: 0x10000, block: low, blockOffset: 0, readOnly: false),
            GuestRegion(start: GuestAddress(0x100000), size: 0x8000, block: high, blockOffset: 0x8000, readOnly: false),
        ])
    }

    @Test func readsBackWhatWasWritten() throws {
        let memory = try Self.makeMemory()
        try memory.store(UInt64(0x1122_3344_5566_7788), at: GuestAddress(0xFFF8))
        #expect(try memory.load(UInt64.self, at: GuestAddress(0xFFF8)) == 0x1122_3344_5566_7788)
        try memory.write([1, 2, 3], at: GuestAddress(0x107FFD))
        #expect(try memory.read(at: GuestAddress(0x107FFD), count: 3) == [1, 2, 3])
    }

    @Test("accesses that leave guest RAM are refused", arguments: [
        (UInt64(0xFFF9), 8),            // crosses the end of the low region
        (UInt64(0x10000), 1),           // in the hole
        (UInt64(0x107FFF), 2),          // crosses the end of the high region
        (UInt64(0xFFFF_FFFF_FFFF_FFFF), 2),  // would wrap around
        (UInt64(0), 0x10001),           // longer than the region
    ])
    func outOfBounds(address: UInt64, count: Int) throws {
        let memory = try Self.makeMemory()
        #expect(throws: GuestMemoryError.outOfBounds(GuestAddress(address), length: UInt64(count))) {
            try memory.slice(at: GuestAddress(address), count: count)
        }
    }

    @Test func regionsMapTheirBlockOffset() throws {
        let memory = try Self.makeMemory()
        let high = memory.regions[1].block
        // The high region starts 0x8000 bytes into its block.
        high.host.storeBytes(of: UInt8(0xAB), toByteOffset: 0x8000, as: UInt8.self)
        #expect(try memory.read(at: GuestAddress(0x100000), count: 1) == [0xAB])
    }

    @Test func overlappingRegionsAreRejected() throws {
        let block = try RamBlock.anonymous(name: "a", size: 0x2000)
        #expect(throws: GuestMemoryError.self) {
            try GuestMemory(regions: [
                GuestRegion(start: GuestAddress(0), size: 0x2000, block: block, blockOffset: 0, readOnly: false),
                GuestRegion(start: GuestAddress(0x1000), size: 0x1000, block: block, blockOffset: 0, readOnly: false),
            ])
        }
    }

    @Test func guestAddressArithmeticIsChecked() {
        #expect(GuestAddress(UInt64.max).adding(1) == nil)
        #expect(GuestAddress(10).adding(5) == GuestAddress(15))
        #expect(GuestAddress(10).offset(from: GuestAddress(11)) == nil)
        #expect(GuestAddress(0x1000).description == "0x1000")
    }

    @Test func memfdBlocksAreNamedAndShared() throws {
        let block = try RamBlock.memfd(name: "test.ram", size: 1 << 20)
        #expect(block.backing == .memfd)
        #expect(block.shared)
        #expect(block.fd != nil)
    }
}

/// DeviceWrites: what a pre-copy migration learns about pages cprvmm's devices wrote.
@Suite struct DeviceWritesTests {
    static func pages(_ block: RamBlock) -> [Int] {
        (0..<block.deviceWrites.wordCount).flatMap { word in
            let bits = block.deviceWrites.take(word: word)
            return (0..<64).filter { bits & (1 << UInt64($0)) != 0 }.map { word * 64 + $0 }
        }
    }

    @Test("stores, writes and completed device buffers mark their pages in their block, once")
    func marksPagesOfTheRightBlock() throws {
        let memory = try GuestMemoryTests.makeMemory()
        let low = memory.regions[0].block, high = memory.regions[1].block
        try memory.store(UInt32(1), at: GuestAddress(0x2FFE))           // straddles pages 2 and 3
        try memory.write([1, 2, 3], at: GuestAddress(0x100000))       // high block page 8 (offset 0x8000)
        let buffer = try memory.writableSlice(at: GuestAddress(0x5000), count: 0x2000)
        #expect(Self.pages(low) == [2, 3], "a buffer taken for writing is not marked before its bytes are in")
        memory.deviceWrote(buffer)
        #expect(Self.pages(low) == [5, 6])
        #expect(Self.pages(high) == [8])
        #expect(Self.pages(low).isEmpty && Self.pages(high).isEmpty, "take clears")
    }

    @Test("reads mark nothing")
    func readsMarkNothing() throws {
        let memory = try GuestMemoryTests.makeMemory()
        _ = try memory.read(at: GuestAddress(0x1000), count: 16)
        _ = try memory.load(UInt64.self, at: GuestAddress(0x100008))
        #expect(Self.pages(memory.regions[0].block).isEmpty && Self.pages(memory.regions[1].block).isEmpty)
    }
}
