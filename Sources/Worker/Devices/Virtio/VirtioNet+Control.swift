/// Which frames the guest wants (virtio 1.x, 5.1.6.5): its MAC, the unicast and multicast
/// tables, promiscuous and all-multicast modes, set through the control queue. QEMU's
/// defaults: promiscuous until the driver says otherwise, so a driver without the control
/// queue receives everything.
struct ReceiveFilter: Equatable {
    static let maxTableEntries = 64

    var mac: [UInt8]
    var promiscuous = true
    var allMulticast = false
    var unicast: [[UInt8]] = []
    var multicast: [[UInt8]] = []

    init(mac: [UInt8]) { self.mac = mac }

    /// Whether a frame for `destination` reaches the guest.
    func accepts(_ destination: ArraySlice<UInt8>) -> Bool {
        if promiscuous { return true }
        let address = Array(destination)
        if address.allSatisfy({ $0 == 0xFF }) { return true }
        if address[0] & 1 != 0 { return allMulticast || multicast.contains(address) }
        return address == mac || unicast.contains(address)
    }
}

extension VirtioNet {
    static let controlOK: UInt8 = 0, controlError: UInt8 = 1
    static let classRx: UInt8 = 0, classMAC: UInt8 = 1, classAnnounce: UInt8 = 3
    static let rxPromiscuous: UInt8 = 0, rxAllMulticast: UInt8 = 1
    static let macTableSet: UInt8 = 0, macAddressSet: UInt8 = 1

    /// One control command: class, command and data in the readable buffers, the ack byte in
    /// the last writable one. Returns the bytes written (1, or 0 without an ack byte).
    func control(_ chain: Virtqueue.Chain, memory: GuestMemory) -> UInt32 {
        guard let ackBuffer = chain.writable.last, ackBuffer.length >= 1 else {
            errors.log("\(name): control request \(chain.head) has no ack byte; returned unserved")
            return 0
        }
        var data: [UInt8] = []
        for buffer in chain.readable {
            guard data.count + Int(buffer.length) <= 4096, let bytes = try? memory.read(at: GuestAddress(buffer.address), count: Int(buffer.length)) else {
                errors.log("\(name): control request \(chain.head): more than 4 KiB, or outside guest RAM")
                return acknowledge(VirtioNet.controlError, at: ackBuffer, memory: memory)
            }
            data += bytes
        }
        let result = command(data)
        if result != VirtioNet.controlOK {
            errors.log("\(name): control command class \(data.first ?? 0) cmd \(data.count > 1 ? data[1] : 0) (\(data.count) bytes) refused")
        }
        return acknowledge(result, at: ackBuffer, memory: memory)
    }

    private func acknowledge(_ status: UInt8, at buffer: Virtqueue.Buffer, memory: GuestMemory) -> UInt32 {
        (try? memory.store(status, at: GuestAddress(buffer.address))) == nil ? 0 : 1
    }

    /// Applies a command to the filter; VIRTIO_NET_OK or VIRTIO_NET_ERR.
    func command(_ data: [UInt8]) -> UInt8 {
        guard data.count >= 2 else { return VirtioNet.controlError }
        let body = Array(data.dropFirst(2))
        switch (data[0], data[1]) {
        case (VirtioNet.classRx, VirtioNet.rxPromiscuous), (VirtioNet.classRx, VirtioNet.rxAllMulticast):
            guard body.count == 1 else { return VirtioNet.controlError }
            lock.withLock {
                if data[1] == VirtioNet.rxPromiscuous { filter.promiscuous = body[0] != 0 } else { filter.allMulticast = body[0] != 0 }
            }
            return VirtioNet.controlOK
        case (VirtioNet.classMAC, VirtioNet.macAddressSet):
            guard body.count == 6 else { return VirtioNet.controlError }
            lock.withLock { filter.mac = body }
            return VirtioNet.controlOK
        case (VirtioNet.classMAC, VirtioNet.macTableSet):
            // Two tables, each a little-endian u32 count and that many 6-byte addresses.
            var rest = body[...]
            var tables: [[[UInt8]]] = []
            for _ in 0..<2 {
                guard rest.count >= 4 else { return VirtioNet.controlError }
                let entries = Int(rest[rest.startIndex]) | Int(rest[rest.startIndex + 1]) << 8
                    | Int(rest[rest.startIndex + 2]) << 16 | Int(rest[rest.startIndex + 3]) << 24
                rest = rest.dropFirst(4)
                guard entries <= ReceiveFilter.maxTableEntries, rest.count >= 6 * entries else { return VirtioNet.controlError }
                tables.append((0..<entries).map { Array(rest.dropFirst(6 * $0).prefix(6)) })
                rest = rest.dropFirst(6 * entries)
            }
            guard rest.isEmpty else { return VirtioNet.controlError }
            lock.withLock {
                filter.unicast = tables[0]
                filter.multicast = tables[1]
            }
            return VirtioNet.controlOK
        case (VirtioNet.classAnnounce, _):
            return VirtioNet.controlOK
        default:
            return VirtioNet.controlError
        }
    }
}
