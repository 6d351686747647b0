import Glibc

/// Receive: frames go from the tap straight into the buffers the guest posted (readv into
/// guest RAM, no copy) whenever the buffers taken from the ring can hold the largest frame
/// the driver negotiated; chains the frame did not reach are given back by rewinding the ring
/// index, which the driver never saw. A driver that posted less room than that still gets
/// its frames: one is read into cprvmm (`pendingFrame`) and copied in once it fits, and
/// while it waits the device thread does not watch the tap -- the next kick of the receive
/// queue (new buffers) brings the watch back. Frames wait in the tap's own queue, never in
/// cprvmm's memory beyond that one, which is saved with the device across an update.
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
            if capacity < needed || pendingFrame != nil {
                guard capacity > 0, let frame = pendingFrame ?? readFrame(limit: needed, watching: &watching) else {
                    // No buffer, or no frame: wait for the driver's kick, or for the tap.
                    queue.nextAvail = start
                    if capacity == 0 {
                        watchTap(false)
                        watching = false
                    }
                    break
                }
                guard frame.count <= capacity else {
                    queue.nextAvail = start
                    // One buffer per frame (no MRG_RXBUF), or every descriptor of the ring
                    // posted: no more room will come for it.
                    if !mergeable || chains.count >= Int(queue.size) {
                        pendingFrame = nil
                        count { $0.rxDropped += 1 }
                        errors.log("\(name): a \(frame.count)-byte frame does not fit the receive buffers the driver can post; dropped")
                        continue
                    }
                    // Held until the driver posts room for it.
                    pendingFrame = frame
                    watchTap(false)
                    watching = false
                    break
                }
                pendingFrame = nil
                do {
                    if try deliver(frame, into: chains, start: start, queue: &queue, memory: memory) { wantsInterrupt = true }
                } catch {
                    broken = "\(error)"
                    break
                }
                continue
            }
            let allSlices = chains.flatMap(\.slices)
            // A tap without a header fills the frame after a header cprvmm writes.
            let skip = tap.vnetHeader ? 0 : TapBackend.headerSize
            var vectors = iovecs(allSlices, skipping: skip)
            let got = readv(tap.fd, &vectors, Int32(vectors.count))
            if got > 0 { memory.deviceWrote(allSlices) }
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
            memory.deviceWrote(allSlices)
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

    /// One frame from the tap into cprvmm's memory, with its header (zeroed when the tap has
    /// none), or nil when the tap has none or it was filtered out or dropped.
    private func readFrame(limit: Int, watching: inout Bool) -> [UInt8]? {
        let skip = tap.vnetHeader ? 0 : TapBackend.headerSize
        var frame = [UInt8](repeating: 0, count: VirtioNet.maxSegmentedFrame)
        while true {
            let got = frame.withUnsafeMutableBytes { read(tap.fd, $0.baseAddress! + skip, $0.count - skip) }
            if got < 0 {
                let error = errno
                if error != EAGAIN && error != EINTR {
                    errors.log("\(name): reading the tap: \(SystemError.describe(error)); receiving stops until the driver's next kick")
                    watchTap(false)
                    watching = false
                }
                return nil
            }
            let length = got + skip
            guard length >= TapBackend.headerSize + 14, length <= limit else {
                count { $0.rxDropped += 1 }
                errors.log("\(name): a \(length)-byte frame from the tap is \(length > limit ? "larger than the driver can take" : "too short"); dropped")
                continue
            }
            guard lock.withLock({ filter.accepts(frame[TapBackend.headerSize..<TapBackend.headerSize + 6]) }) else {
                count { $0.rxDropped += 1 }
                continue
            }
            return Array(frame[0..<length])
        }
    }

    /// Copies `frame` into the chains taken from `start` on, completes the ones it reached and
    /// gives the rest back; returns whether the driver wants an interrupt.
    private func deliver(
        _ frame: [UInt8], into chains: [(chain: Virtqueue.Chain, slices: [UnsafeMutableRawBufferPointer], capacity: Int)],
        start: UInt16, queue: inout Virtqueue, memory: GuestMemory
    ) throws(Virtqueue.Failure) -> Bool {
        var offset = 0
        var used: [(head: UInt16, written: UInt32)] = []
        for entry in chains where offset < frame.count {
            let first = offset
            for slice in entry.slices where offset < frame.count {
                let take = min(slice.count, frame.count - offset)
                frame.withUnsafeBytes { slice.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: take) }
                offset += take
            }
            used.append((entry.chain.head, UInt32(offset - first)))
        }
        queue.nextAvail = start &+ UInt16(used.count)
        writeHeader(into: chains.flatMap(\.slices), buffers: UInt16(used.count), zeroed: false)
        memory.deviceWrote(chains.flatMap(\.slices))
        var wantsInterrupt = false
        for entry in used where try queue.push(head: entry.head, written: entry.written, memory) { wantsInterrupt = true }
        count {
            $0.rxPackets += 1
            $0.rxBytes += UInt64(frame.count - TapBackend.headerSize)
        }
        return wantsInterrupt
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
