import CLinux
import Glibc

/// What a virtio device type adds to the PCI transport: its id, features, configuration
/// space and how it serves one request. Called on the transport's device thread (requests)
/// or a vCPU thread (configuration), never both for the same data without its own lock.
protocol VirtioDeviceModel: AnyObject {
    /// The virtio device type (2 = block); the PCI device id is 0x1040 + type.
    var deviceType: UInt16 { get }
    /// The PCI class code (block storage: 0x010000, SCSI, as QEMU's virtio-blk-pci has it).
    var pciClass: UInt32 { get }
    var queueCount: Int { get }
    /// Feature bits offered (VIRTIO_F_VERSION_1 is added by the transport).
    var features: UInt64 { get }
    /// The device-specific configuration, read a field at a time.
    func readConfig(offset: Int, into data: UnsafeMutableRawBufferPointer)
    var configSize: Int { get }
    /// Serves one request and returns how many bytes it wrote into the chain's writable
    /// buffers. Errors of the request are the device's to report in the request's status.
    func serve(_ chain: Virtqueue.Chain, queue: Int, memory: GuestMemory) -> UInt32
    /// Serves the queues on the device thread after a kick (or a wake-up of another fd the
    /// device watches). Default: every queue's requests, by `serve`.
    func serviceQueues(_ transport: VirtioPciTransport)
    /// The driver set DRIVER_OK having accepted `features` (also after a state load).
    func driverStarted(features: UInt64)
    /// The driver reset the device (its thread is quiesced meanwhile).
    func deviceReset()
}

extension VirtioDeviceModel {
    func serviceQueues(_ transport: VirtioPciTransport) {
        for queue in 0..<queueCount { transport.process(queue) }
    }
    func driverStarted(features: UInt64) {}
    func deviceReset() {}
}

/// virtio over PCI, modern interface (virtio 1.x, 4.1): common configuration, ISR, device
/// configuration and notifications in a 64-bit memory BAR (BAR4, QEMU's layout), the MSI-X
/// table and PBA in BAR1. Queue kicks arrive through an ioeventfd on the notify address (no
/// vCPU exit) and are served on the device's own thread; completions interrupt through an
/// irqfd per MSI-X vector (a KVM MSI route that follows the guest's table, MsiRoutes) or
/// INTx. SeaBIOS polls and needs neither.
final class VirtioPciTransport: PciFunction, MmioDevice {
    static let vendor: UInt16 = 0x1AF4
    static let featureVersion1: UInt64 = 1 << 32
    static let statusAcknowledge: UInt8 = 1, statusDriver: UInt8 = 2, statusDriverOK: UInt8 = 4
    static let statusFeaturesOK: UInt8 = 8, statusNeedsReset: UInt8 = 0x40, statusFailed: UInt8 = 0x80
    static let noVector: UInt16 = 0xFFFF

    /// BAR4's layout, as QEMU lays it out.
    static let structuresBar = 4, msixBar = 1
    static let commonOffset: UInt64 = 0x0000, isrOffset: UInt64 = 0x1000
    static let deviceConfigOffset: UInt64 = 0x2000, notifyOffset: UInt64 = 0x3000
    static let notifyMultiplier: UInt32 = 4
    static let structuresSize: UInt64 = 0x4000
    static let msixBarSize: UInt64 = 0x1000
    static let msixPBAOffset: UInt64 = 0x800

    let pciName: String
    let qdevID: String
    var config: PciConfigSpace
    let model: VirtioDeviceModel
    let memory: GuestMemory
    /// The offset of the MSI-X capability in config space.
    let msixCapability: Int

    /// Register state, shared by vCPU threads and the device thread.
    let lock = Lock()
    var registers = VirtioRegisters()
    var msix: MsixTable
    /// Cached from the MSI-X capability's message control (config writes update it).
    var msixEnabled = false, msixMasked = false

    /// Per MSI-X vector, the irqfd that raises its route; and how a vector's message reaches
    /// the route (the guest wrote the table, or a state was loaded). Set by the machine.
    var msiEventFDs: [Int32] = []
    var setMSIMessage: (_ vector: Int, _ address: UInt64, _ data: UInt32) -> Void = { _, _, _ in }
    /// An INTx level change. Set by the machine.
    var setIntx: (Bool) -> Void = { _ in }
    /// Adds (or removes) a queue's ioeventfd at a guest-physical address.
    var setNotifyEventFD: (_ address: UInt64, _ fd: Int32, _ assign: Bool) -> Void = { _, _, _ in }
    /// Where each queue's doorbell is registered now.
    private var notifyAddresses: [UInt64?] = []

    let worker: VirtioWorker
    let errors = RateLimiter()

    /// The option ROM firmware runs from the expansion ROM BAR, if the device has one.
    let rom: OptionROM?

    init(name: String, qdevID: String, model: VirtioDeviceModel, memory: GuestMemory, rom: OptionROM? = nil) throws {
        self.rom = rom
        self.pciName = name
        self.qdevID = qdevID
        self.model = model
        self.memory = memory
        var config = PciConfigSpace(
            vendor: VirtioPciTransport.vendor, device: 0x1040 + model.deviceType, classCode: model.pciClass, revision: 1,
            subsystemVendor: VirtioPciTransport.vendor, subsystem: 0x1100, interruptPin: 1)
        config.addBar(VirtioPciTransport.msixBar, kind: .memory32, size: VirtioPciTransport.msixBarSize)
        config.addBar(VirtioPciTransport.structuresBar, kind: .memory64, size: VirtioPciTransport.structuresSize, prefetchable: true)
        if let rom { config.addROM(size: rom.barSize) }
        let vectors = model.queueCount + 1
        // MSI-X: table size N-1; enable and function mask are the writable bits.
        let control = UInt16(vectors - 1)
        msixCapability = config.addCapability(
            id: 0x11,
            body: [UInt8(control & 0xFF), UInt8(control >> 8)]
                + le32(UInt32(VirtioPciTransport.msixBar)) + le32(UInt32(VirtioPciTransport.msixPBAOffset) | UInt32(VirtioPciTransport.msixBar)),
            writableBody: [0, 0xC0])
        func virtioCap(_ type: UInt8, _ offset: UInt64, _ length: UInt64, extra: [UInt8] = []) -> [UInt8] {
            [UInt8(16 + extra.count), type, UInt8(VirtioPciTransport.structuresBar), 0, 0, 0]
                + le32(UInt32(offset)) + le32(UInt32(length)) + extra
        }
        config.addCapability(id: 0x09, body: virtioCap(1, VirtioPciTransport.commonOffset, 0x38))
        config.addCapability(id: 0x09, body: virtioCap(3, VirtioPciTransport.isrOffset, 1))
        config.addCapability(id: 0x09, body: virtioCap(4, VirtioPciTransport.deviceConfigOffset, UInt64(model.configSize)))
        config.addCapability(id: 0x09, body: virtioCap(
            2, VirtioPciTransport.notifyOffset, UInt64(model.queueCount) * UInt64(VirtioPciTransport.notifyMultiplier),
            extra: le32(VirtioPciTransport.notifyMultiplier)))
        self.config = config
        self.msix = MsixTable(vectors: vectors)
        registers.queues = Array(repeating: Virtqueue(), count: model.queueCount)
        worker = try VirtioWorker(queues: model.queueCount)
        worker.transport = self
    }

    var offeredFeatures: UInt64 { model.features | VirtioPciTransport.featureVersion1 }

    func barTarget(_ index: Int) -> PciBarTarget? {
        switch index {
        case VirtioPciTransport.structuresBar: return .memory(self)
        case VirtioPciTransport.msixBar: return .memory(MsixRegion(transport: self))
        case PciConfigSpace.romIndex: return rom.map { .memory($0) }
        default: return nil
        }
    }

    /// BAR4 moved: the notify ioeventfds move with it.
    func barMapped(_ index: Int, at address: UInt64?) {
        guard index == VirtioPciTransport.structuresBar else { return }
        if notifyAddresses.isEmpty { notifyAddresses = Array(repeating: nil, count: model.queueCount) }
        for queue in 0..<model.queueCount {
            let fd = worker.kickFDs[queue]
            if let old = notifyAddresses[queue] { setNotifyEventFD(old, fd, false) }
            let notify = address.map { $0 + VirtioPciTransport.notifyOffset + UInt64(queue) * UInt64(VirtioPciTransport.notifyMultiplier) }
            if let notify { setNotifyEventFD(notify, fd, true) }
            notifyAddresses[queue] = notify
        }
    }

    func configWritten(offset: Int, size: Int) {
        let control = UInt16(config.read(msixCapability + 2, size: 2))
        lock.withLock {
            msixEnabled = control & 0x8000 != 0
            msixMasked = control & 0x4000 != 0
        }
        // Unmasking may release pending vectors.
        deliverPendingMSIX()
    }

    // MARK: BAR4

    func mmioRead(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        data.initializeMemory(as: UInt8.self, repeating: 0)
        switch offset {
        case VirtioPciTransport.commonOffset..<VirtioPciTransport.isrOffset:
            let value = lock.withLock { registers.readCommon(Int(offset), size: data.count, offered: offeredFeatures) }
            for i in 0..<data.count { data[i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        case VirtioPciTransport.isrOffset:
            // Reading the ISR returns and clears it, and lowers INTx.
            let isr = lock.withLock { () -> UInt8 in
                let value = registers.isr
                registers.isr = 0
                return value
            }
            data[0] = isr
            if isr != 0 { setIntx(false) }
        case VirtioPciTransport.deviceConfigOffset..<VirtioPciTransport.notifyOffset:
            let at = Int(offset - VirtioPciTransport.deviceConfigOffset)
            if at + data.count <= model.configSize { model.readConfig(offset: at, into: data) }
        default:
            break  // notify reads as 0
        }
    }

    func mmioWrite(offset: UInt64, from data: UnsafeRawBufferPointer) {
        var value: UInt64 = 0
        for (i, byte) in data.prefix(8).enumerated() { value |= UInt64(byte) << (8 * i) }
        switch offset {
        case VirtioPciTransport.commonOffset..<VirtioPciTransport.isrOffset:
            writeCommon(Int(offset), size: data.count, value: value)
        case VirtioPciTransport.notifyOffset..<VirtioPciTransport.structuresSize:
            // Only reached without an ioeventfd (or with an access size KVM passes on).
            let queue = Int((offset - VirtioPciTransport.notifyOffset) / UInt64(VirtioPciTransport.notifyMultiplier))
            if queue < model.queueCount { worker.kick(queue) }
        default:
            break  // the ISR and the block device's configuration are read-only
        }
    }

    private func writeCommon(_ offset: Int, size: Int, value: UInt64) {
        let effect = lock.withLock { registers.writeCommon(offset, size: size, value: value, offered: offeredFeatures, memory: memory) }
        switch effect {
        case .none:
            break
        case .reset:
            // The device thread finishes the request it serves, then the device starts over.
            worker.quiesce()
            lock.withLock { registers.reset(queues: model.queueCount) }
            model.deviceReset()
            setIntx(false)
            worker.resume()
        case .started:
            model.driverStarted(features: lock.withLock { registers.driverFeatures })
            worker.resume()
        case .invalidQueue(let why):
            errors.log("\(pciName): the guest enabled a queue that cannot work: \(why); the device needs a reset")
        }
    }

    // MARK: Interrupts

    /// After the device thread completed requests on `queue` that the driver wants to hear of.
    func interrupt(queue: Int) {
        let vector: UInt16? = lock.withLock {
            guard msixEnabled else {
                registers.isr |= 1
                return nil
            }
            return registers.queues[queue].msixVector
        }
        guard let vector else {
            setIntx(true)
            return
        }
        deliverVector(vector)
    }

    func deliverVector(_ vector: UInt16) {
        let send: Bool = lock.withLock {
            guard vector != VirtioPciTransport.noVector, Int(vector) < msix.vectors else { return false }
            if msixMasked || msix.masked(Int(vector)) {
                msix.setPending(Int(vector), true)
                return false
            }
            return true
        }
        if send { raise(Int(vector)) }
    }

    /// Writes the vector's irqfd: KVM sends the message its route holds.
    private func raise(_ vector: Int) {
        guard vector < msiEventFDs.count else { return }
        var one: UInt64 = 1
        _ = write(msiEventFDs[vector], &one, 8)
    }

    /// The guest changed the table (or a state was loaded): the routes follow.
    func messagesChanged(_ vectors: Range<Int>) {
        for vector in vectors where vector < msix.vectors {
            let message = lock.withLock { msix.message(vector) }
            setMSIMessage(vector, message.address, message.data)
        }
    }

    /// Sends what was held back while a vector or the function was masked.
    func deliverPendingMSIX() {
        let ready: [Int] = lock.withLock {
            guard msixEnabled, !msixMasked else { return [] }
            var vectors: [Int] = []
            for vector in 0..<msix.vectors where msix.pending(vector) && !msix.masked(vector) {
                msix.setPending(vector, false)
                vectors.append(vector)
            }
            return vectors
        }
        for vector in ready { raise(vector) }
    }
}

func le32(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }

/// BAR1: the MSI-X table (16 bytes per vector) and, at 0x800, the pending-bit array.
final class MsixRegion: MmioDevice {
    unowned let transport: VirtioPciTransport

    init(transport: VirtioPciTransport) { self.transport = transport }

    func mmioRead(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        let value = transport.lock.withLock { transport.msix.read(offset: Int(offset), size: data.count) }
        for i in 0..<data.count { data[i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    func mmioWrite(offset: UInt64, from data: UnsafeRawBufferPointer) {
        var value: UInt64 = 0
        for (i, byte) in data.prefix(8).enumerated() { value |= UInt64(byte) << (8 * i) }
        transport.lock.withLock { transport.msix.write(offset: Int(offset), size: data.count, value: value) }
        let first = Int(offset) / 16
        transport.messagesChanged(first..<(Int(offset) + data.count + 15) / 16)
        transport.deliverPendingMSIX()  // a vector unmasked with its bit pending fires now
    }
}
