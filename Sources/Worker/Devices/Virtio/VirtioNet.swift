import Glibc

/// virtio-net (virtio 1.x, 5.1) over a TAP interface: one receive and one transmit queue and
/// the control queue. Frames go between the rings and the tap with their virtio-net header,
/// so checksum and segmentation offloads are the kernel's work on the tap. Transmit is served
/// like any request (VirtioPciTransport.process); receive is driven by the tap
/// (VirtioNet+Receive); the control queue sets the receive filter (VirtioNet+Control).
/// Anything a guest may not send -- a header shorter than 12 bytes, an offload it did not
/// negotiate, a frame the tap refuses -- is dropped, counted and logged (rate-limited).
final class VirtioNet: VirtioDeviceModel {
    static let featureCsum: UInt64 = 1 << 0
    static let featureGuestCsum: UInt64 = 1 << 1
    static let featureMAC: UInt64 = 1 << 5
    static let featureGuestTSO4: UInt64 = 1 << 7
    static let featureGuestTSO6: UInt64 = 1 << 8
    static let featureGuestECN: UInt64 = 1 << 9
    static let featureHostTSO4: UInt64 = 1 << 11
    static let featureHostTSO6: UInt64 = 1 << 12
    static let featureHostECN: UInt64 = 1 << 13
    static let featureMergeableBuffers: UInt64 = 1 << 15
    static let featureStatus: UInt64 = 1 << 16
    static let featureControlQueue: UInt64 = 1 << 17
    static let featureControlRx: UInt64 = 1 << 18
    static let featureControlMAC: UInt64 = 1 << 23
    static let statusLinkUp: UInt16 = 1
    static let receiveQueue = 0, transmitQueue = 1, controlQueue = 2
    /// The largest frame the tap may hand over: a 64 KiB GSO frame, or an Ethernet frame with
    /// a VLAN tag; plus the header.
    static let maxSegmentedFrame = 65_550 + TapBackend.headerSize
    static let maxPlainFrame = 1_518 + TapBackend.headerSize
    /// IOV_MAX: the most pieces one readv or writev takes.
    static let maxPieces = 1024

    let tap: TapBackend
    let name: String
    /// Set once the transport exists (it owns the negotiated features and the rings).
    weak var transport: VirtioPciTransport?
    /// Turns the device thread's watch on the tap on or off (VirtioWorker.watch).
    var watchTap: (Bool) -> Void = { _ in }
    let errors = RateLimiter()

    /// What the guest sees and sets; saved with the device (VirtioNetDevice). Under `lock`.
    let lock = Lock()
    var filter: ReceiveFilter
    var linkUp = true
    private(set) var counters = Counters()
    /// A frame read from the tap while the driver had posted less room than the largest frame
    /// it negotiated, waiting for more buffers: at most one, and saved with the device, so it
    /// crosses an update too (VirtioNet+Receive).
    var pendingFrame: [UInt8]?

    struct Counters: Equatable {
        var rxPackets: UInt64 = 0, rxBytes: UInt64 = 0, rxDropped: UInt64 = 0
        var txPackets: UInt64 = 0, txBytes: UInt64 = 0, txDropped: UInt64 = 0
    }

    init(tap: TapBackend, mac: [UInt8], name: String) {
        self.tap = tap
        self.name = name
        filter = ReceiveFilter(mac: mac)
    }

    var deviceType: UInt16 { 1 }
    var pciClass: UInt32 { 0x02_0000 }
    var queueCount: Int { 3 }
    var features: UInt64 {
        var offered = VirtioNet.featureMAC | VirtioNet.featureStatus | VirtioNet.featureMergeableBuffers
            | VirtioNet.featureControlQueue | VirtioNet.featureControlRx | VirtioNet.featureControlMAC
        // Offloads travel in the tap's virtio-net header; a tap without one offers none.
        if tap.vnetHeader {
            offered |= VirtioNet.featureCsum | VirtioNet.featureGuestCsum
                | VirtioNet.featureHostTSO4 | VirtioNet.featureHostTSO6 | VirtioNet.featureHostECN
                | VirtioNet.featureGuestTSO4 | VirtioNet.featureGuestTSO6 | VirtioNet.featureGuestECN
        }
        return offered
    }

    /// mac, status, max_virtqueue_pairs.
    var configSize: Int { 10 }

    func readConfig(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        let (mac, status) = lock.withLock { (filter.mac, linkUp ? VirtioNet.statusLinkUp : 0) }
        let bytes = mac + [UInt8(status & 0xFF), UInt8(status >> 8), 1, 0]
        for i in 0..<data.count { data[i] = offset + i < bytes.count ? bytes[offset + i] : 0 }
    }

    var statistics: Counters { lock.withLock { counters } }

    func count(_ update: (inout Counters) -> Void) { lock.withLock { update(&counters) } }

    /// The features the driver accepted (0 before it did).
    var negotiated: UInt64 { transport?.lock.withLock { transport?.registers.driverFeatures ?? 0 } ?? 0 }

    /// The driver accepted its features: the tap's receive offloads follow.
    func driverStarted(features accepted: UInt64) {
        if let problem = tap.setReceiveOffloads(
            checksum: accepted & VirtioNet.featureGuestCsum != 0, tso4: accepted & VirtioNet.featureGuestTSO4 != 0,
            tso6: accepted & VirtioNet.featureGuestTSO6 != 0, ecn: accepted & VirtioNet.featureGuestECN != 0, ufo: false) {
            errors.log("\(name): \(problem); the tap completes checksums and segments itself")
        }
    }

    /// A reset drops the frame a driver had no room for, as a NIC drops what it received.
    func deviceReset() {
        pendingFrame = nil
    }

    /// QMP set_link: the guest sees the link change (a configuration interrupt), and while it is
    /// down no frame is received or sent.
    func setLink(up: Bool) {
        let changed = lock.withLock { () -> Bool in
            defer { linkUp = up }
            return linkUp != up
        }
        guard changed, let transport else { return }
        transport.configChanged()
        if up { transport.worker.resume() }
    }

    func serve(_ chain: Virtqueue.Chain, queue: Int, memory: GuestMemory) -> UInt32 {
        switch queue {
        case VirtioNet.transmitQueue:
            transmit(chain, memory: memory)
            return 0
        case VirtioNet.controlQueue:
            return control(chain, memory: memory)
        default:
            // The receive queue is filled from the tap, never served like this.
            return 0
        }
    }

    /// The transmit and control queues as requests; then whatever the tap holds for the guest.
    func serviceQueues(_ transport: VirtioPciTransport) {
        transport.process(VirtioNet.controlQueue)
        transport.process(VirtioNet.transmitQueue)
        receive(transport)
    }

    /// One frame from the guest to the tap: header and frame in the chain's readable buffers.
    private func transmit(_ chain: Virtqueue.Chain, memory: GuestMemory) {
        let readable = chain.readable
        let total = readable.reduce(0) { $0 + Int($1.length) }
        guard chain.writable.isEmpty, total >= TapBackend.headerSize + 14, total <= VirtioNet.maxSegmentedFrame else {
            return dropTransmit(chain.head, "a frame of \(total) bytes with \(chain.writable.count) device-writable buffers")
        }
        guard lock.withLock({ linkUp }) else { return count { $0.txDropped += 1 } }
        var slices: [UnsafeMutableRawBufferPointer] = []
        for buffer in readable {
            guard let slice = try? memory.slice(at: GuestAddress(buffer.address), count: Int(buffer.length)) else {
                return dropTransmit(chain.head, "a buffer at 0x\(String(buffer.address, radix: 16)) outside guest RAM")
            }
            slices.append(slice)
        }
        var header = [UInt8](repeating: 0, count: TapBackend.headerSize)
        copy(from: slices, skipping: 0, into: &header)
        if let problem = checkHeader(header) { return dropTransmit(chain.head, problem) }
        // A tap without a header takes the bare frame.
        let skip = tap.vnetHeader ? 0 : TapBackend.headerSize
        var vectors = iovecs(slices, skipping: skip)
        let written = writev(tap.fd, &vectors, Int32(vectors.count))
        guard written >= 0 else {
            return dropTransmit(chain.head, "the tap refused the frame: \(SystemError.describe(errno))")
        }
        count {
            $0.txPackets += 1
            $0.txBytes += UInt64(total - TapBackend.headerSize)
        }
    }

    /// An offload the driver did not negotiate is not sent (the tap would act on it anyway).
    private func checkHeader(_ header: [UInt8]) -> String? {
        let accepted = negotiated
        let needsChecksum = header[0] & 1 != 0
        let gso = header[1] & 0x7F
        if needsChecksum && accepted & VirtioNet.featureCsum == 0 { return "a checksum offload (NEEDS_CSUM) without VIRTIO_NET_F_CSUM" }
        switch gso {
        case 0: return nil
        case 1 where accepted & VirtioNet.featureHostTSO4 != 0: break
        case 4 where accepted & VirtioNet.featureHostTSO6 != 0: break
        default: return "segmentation offload type \(gso) that was not negotiated"
        }
        if header[1] & 0x80 != 0 && accepted & VirtioNet.featureHostECN == 0 { return "ECN segmentation that was not negotiated" }
        return needsChecksum ? nil : "a segmentation offload without NEEDS_CSUM"
    }

    private func dropTransmit(_ head: UInt16, _ why: String) {
        count { $0.txDropped += 1 }
        errors.log("\(name): transmit request \(head): \(why); dropped")
    }
}

/// Copies the first bytes of a buffer list after `skipping` bytes.
func copy(from slices: [UnsafeMutableRawBufferPointer], skipping: Int, into bytes: inout [UInt8]) {
    var skip = skipping, filled = 0
    for slice in slices where filled < bytes.count {
        if skip >= slice.count { skip -= slice.count; continue }
        let take = min(slice.count - skip, bytes.count - filled)
        for i in 0..<take { bytes[filled + i] = slice[skip + i] }
        filled += take
        skip = 0
    }
}

/// iovecs over a buffer list, leaving out its first `skipping` bytes.
func iovecs(_ slices: [UnsafeMutableRawBufferPointer], skipping: Int) -> [iovec] {
    var skip = skipping
    var vectors: [iovec] = []
    for slice in slices where slice.count > 0 {
        if skip >= slice.count { skip -= slice.count; continue }
        vectors.append(iovec(iov_base: slice.baseAddress! + skip, iov_len: slice.count - skip))
        skip = 0
    }
    return vectors
}
