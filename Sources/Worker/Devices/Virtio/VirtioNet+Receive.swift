import Glibc

/// Receive: frames go from the tap straight into the buffers the guest posted (readv into
/// guest RAM, no copy). A frame is read only once buffers for the largest possible frame are
/// taken from the ring, so a frame is never read without a place to put it: when the guest
/// posts too few, the device thread stops watching the tap, the frames wait in the tap's own
/// queue, and the next kick of the receive queue (new buffers) brings the watch back. Chains
/// taken but not used are given back by rewinding the ring index, which the driver never saw.
/// The same holds across a live update: nothing is ever held in cprvmm's memory.
extension VirtioNet {
    func receive(_ transport: VirtioPciTransport) {
        let index = VirtioNet.receiveQueue
        guard var queue = transport.lock.withLock({ () -> Virtqueue? in
            let registers = transport.registers
            return registers.driverReady && registers.queues[index].ready ? registers.queues[index] : nil
        }), lock.withLock({ linkUp }) else {
            watchTap(false)
            return
        }
        let accepted = negotiated
        let mergeable = accepted & VirtioNet.featureMergeableBuffers != 0
        let segmented = accepted & (VirtioNet.featureGuestTSO4 | VirtioNet.featureGuestTSO6) != 0
        let needed = segmented ? VirtioNet.maxSegmentedFrame : VirtioNet.maxPlainFrame
        let memory = transport.memory
        var wantsInterrupt = false
        var broken: String?
        var watching = true
        frames: while !transport.worker.shouldYield {
            let start = queue.nextAvail
            var chains: [(chain: Virtqueue.Chain, slices: [UnsafeMutableRawBufferPointer], capacity: Int)] = []
            var capacity = 0
            // A chain the device cannot use ends the batch: it and every chain taken before it
            // go back empty (the ring index cannot be rewound past a completed entry).
            var unusable: UInt16?
            do {
                while capacity < needed && (mergeable || chains.isEmpty) {
                    guard let chain = try queue.pop(memory) else { break }
                    guard let slices = writableSlices(chain, memory: memory) else {
                        unusable = chain.head
                        break
                    }
                    let room = slices.reduce(0) { $0 + $1.count }
                    chains.append((chain, slices, room))
                    capacity += room
                }
            } catch .badChain(let head, let why) {
                errors.log("\(name): receive chain \(head): \(why); returned unused")
                unusable = head
            } catch {
                broken = "\(error)"
                break
            }
            // readv takes at most IOV_MAX (1024) pieces: a guest that posts the buffers in
            // smaller ones than that allows gets them back empty, rather than a busy loop.
            if unusable == nil, chains.reduce(0, { $0 + $1.slices.count }) > VirtioNet.maxPieces, let last = chains.popLast() {
                errors.log("\(name): receive buffers in more than \(VirtioNet.maxPieces) pieces; returned unused")
                unusable = last.chain.head
            }
            if let unusable {
                do {
                    for head in chains.map(\.chain.head) + [unusable] where try queue.push(head: head, written: 0, memory) {
                        wantsInterrupt = true
                    }
                } catch {
                    broken = "\(error)"
                    break
                }
                count { $0.rxDropped += 1 }
                continue
            }
            guard capacity >= needed else {
                // Too few buffers for any frame: give them back and wait for the driver's kick.
                queue.nextAvail = start
                watchTap(false)
                watching = false
                break
            }
            let allSlices = chains.flatMap(\.slices)
            // A tap without a header fills the frame after a header cprvmm writes.
            let skip = tap.vnetHeader ? 0 : TapBackend.headerSize
            var vectors = iovecs(allSlices, skipping: skip)
            let got = readv(tap.fd, &vectors, Int32(vectors.count))
            if got < 0 {
                let error = errno
                queue.nextAvail = start
                if error != EAGAIN && error != EINTR {
                    // A tap that fails (its interface deleted, ...) is not watched until the
                    // driver's next kick: a readable fd that only fails would spin the thread.
                    errors.log("\(name): reading the tap: \(SystemError.describe(error)); receiving stops until the driver's next kick")
                    watchTap(false)
                    watching = false
                }
                break
            }
            let length = got + skip
            guard length >= TapBackend.headerSize + 14, length <= capacity else {
                queue.nextAvail = start
                count { $0.rxDropped += 1 }
                errors.log("\(name): a \(length)-byte frame from the tap \(length > capacity ? "is larger than the buffers for the largest frame" : "is too short"); dropped")
                continue
            }
            var destination = [UInt8](repeating: 0, count: 6)
            copy(from: allSlices, skipping: TapBackend.headerSize, into: &destination)
            guard lock.withLock({ filter.accepts(destination[...]) }) else {
                queue.nextAvail = start
                count { $0.rxDropped += 1 }
                continue
            }
            // Chains the frame reached; the rest go back.
            var remaining = length
            var used: [(head: UInt16, written: UInt32)] = []
            for entry in chains where remaining > 0 {
                let written = min(remaining, entry.capacity)
                used.append((entry.chain.head, UInt32(written)))
                remaining -= written
            }
            queue.nextAvail = start &+ UInt16(used.count)
            writeHeader(into: allSlices, buffers: UInt16(used.count), zeroed: !tap.vnetHeader)
            do {
                for entry in used where try queue.push(head: entry.head, written: entry.written, memory) { wantsInterrupt = true }
            } catch {
                broken = "\(error)"
                break
            }
            count {
                $0.rxPackets += 1
                $0.rxBytes += UInt64(length - TapBackend.headerSize)
            }
        }
        if watching && broken == nil { watchTap(true) }
        transport.lock.withLock {
            transport.registers.queues[index].nextAvail = queue.nextAvail
            transport.registers.queues[index].nextUsed = queue.nextUsed
            if broken != nil { transport.registers.status |= VirtioPciTransport.statusNeedsReset }
        }
        if let broken {
            errors.log("\(name): receive queue: \(broken); the device needs a reset (the driver must reset it)")
            watchTap(false)
            transport.configChanged()
        }
        if wantsInterrupt { transport.interrupt(queue: index) }
    }

    /// The chain's buffers as memory the device may write, or nil (logged) if it has readable
    /// buffers or any lies outside guest RAM.
    private func writableSlices(_ chain: Virtqueue.Chain, memory: GuestMemory) -> [UnsafeMutableRawBufferPointer]? {
        guard chain.readable.isEmpty else {
            errors.log("\(name): receive chain \(chain.head) has device-readable buffers; returned unused")
            return nil
        }
        var slices: [UnsafeMutableRawBufferPointer] = []
        for buffer in chain.buffers {
            guard let slice = try? memory.writableSlice(at: GuestAddress(buffer.address), count: Int(buffer.length)) else {
                errors.log("\(name): receive chain \(chain.head) has a buffer at 0x\(String(buffer.address, radix: 16)) outside guest RAM; returned unused")
                return nil
            }
            slices.append(slice)
        }
        return slices
    }

    /// num_buffers (bytes 10-11 of the header, which the tap leaves alone); the whole header
    /// when the tap has none (no offload: flags and GSO type 0).
    private func writeHeader(into slices: [UnsafeMutableRawBufferPointer], buffers: UInt16, zeroed: Bool) {
        var header = [UInt8](repeating: 0, count: TapBackend.headerSize)
        if !zeroed { copy(from: slices, skipping: 0, into: &header) }
        header[10] = UInt8(buffers & 0xFF)
        header[11] = UInt8(buffers >> 8)
        var offset = 0
        for slice in slices where offset < header.count {
            let take = min(slice.count, header.count - offset)
            for i in 0..<take { slice[i] = header[offset + i] }
            offset += take
        }
    }
}
