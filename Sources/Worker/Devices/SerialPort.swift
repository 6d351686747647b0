import Shared

/// The COM1 device: a 16550A register model wired to a backend and to IRQ 4.
/// vCPU threads (register accesses) and the loop thread (host input) share it under one lock.
final class SerialPort: PortDevice {
    static let basePort: UInt16 = 0x3F8
    static let irq: UInt32 = 4
    /// Host input held while the guest's FIFO is full; beyond this the loop stops reading.
    static let pendingLimit = 4096

    private let lock = Lock()
    private var uart = Serial16550()
    let backend: SerialBackend
    private let setInterruptLine: (Bool) -> Void
    /// Called (from a vCPU thread) when input held back by `receive` returning false may flow again.
    var onSpaceAvailable: () -> Void = {}
    private var lineLevel = false
    private var pending: [UInt8] = []

    init(backend: SerialBackend, setInterruptLine: @escaping (Bool) -> Void) {
        self.backend = backend
        self.setInterruptLine = setInterruptLine
    }

    func portRead(offset: UInt16, into data: UnsafeMutableRawBufferPointer) {
        lock.withLock {
            data[0] = uart.read(offset: offset)
            for i in 1..<data.count { data[i] = 0 }
            if offset == 0 { drainPending() }
            updateInterruptLine()
        }
    }

    func portWrite(offset: UInt16, from data: UnsafeRawBufferPointer) {
        portWrite(offset: offset, size: data.count, count: 1, from: data)
    }

    /// A whole `rep outsb` line costs one backend write instead of one per byte.
    func portWrite(offset: UInt16, size: Int, count: Int, from data: UnsafeRawBufferPointer) {
        lock.withLock {
            var transmitted: [UInt8] = []
            transmitted.reserveCapacity(count)
            for i in 0..<count {
                // The UART's registers are 8 bits wide: a wider access writes its low byte.
                if let byte = uart.write(offset: offset, value: data[i * size]) { transmitted.append(byte) }
            }
            if !transmitted.isEmpty { transmitted.withUnsafeBytes { backend.send($0) } }
            updateInterruptLine()
        }
    }

    /// Decided on the register model itself: a read is constant if it leaves the state as it
    /// was (LSR without an overrun, say); a write is logged if the state stays the same for two
    /// different values, so not for a register that stores what is written (THR qualifies,
    /// without loopback or a THRE interrupt to re-arm). All else stops the bridge.
    func bridgeAccess(offset: UInt16) -> PortBridgeAccess {
        lock.withLock {
            var reader = uart
            let value = reader.read(offset: offset)
            let constantRead = reader == uart && (offset != Serial16550.dataOffset || pending.isEmpty)
            var writerA = uart, writerB = uart
            _ = writerA.write(offset: offset, value: 0x00)
            _ = writerB.write(offset: offset, value: 0x41)
            return PortBridgeAccess(constantRead: constantRead ? value : nil, writeLogged: writerA == uart && writerB == uart)
        }
    }

    /// The register model, for migration. Setting it re-drives the interrupt line to match.
    var uartState: Serial16550 {
        get { lock.withLock { uart } }
        set {
            lock.withLock {
                uart = newValue
                lineLevel = !uart.interruptLine  // force the update below to drive the line
                updateInterruptLine()
            }
        }
    }

    /// Input from the backend. Returns false when the caller should stop reading for now.
    @discardableResult
    func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        lock.withLock {
            pending.append(contentsOf: bytes)
            drainPending()
            updateInterruptLine()
            return pending.count < SerialPort.pendingLimit
        }
    }

    private func drainPending() {
        guard !pending.isEmpty else { return }
        let wasFull = pending.count >= SerialPort.pendingLimit
        let taken = pending.withUnsafeBytes { uart.receive($0) }
        pending.removeFirst(taken)
        if wasFull && pending.count < SerialPort.pendingLimit { onSpaceAvailable() }
    }

    private func updateInterruptLine() {
        let level = uart.interruptLine
        guard level != lineLevel else { return }
        lineLevel = level
        setInterruptLine(level)
    }
}

/// COM1 as a machine device: its state is the register model, its fds the backend's.
extension SerialPort: Device {
    var id: String { "com1" }
    var topology: String { "isa-serial iobase=0x\(String(SerialPort.basePort, radix: 16)) irq=\(SerialPort.irq)" }

    func attach(to buses: Buses) throws {
        try buses.ports.register(self, name: "COM1", base: SerialPort.basePort, count: Serial16550.portCount)
    }

    var stateSection: (name: String, version: UInt32)? { (Serial16550.sectionName, Serial16550.sectionVersion) }
    func saveState() throws -> [UInt8] { uartState.encodeState() }
    func loadState(_ section: StateSection) throws { uartState = try Serial16550.decodeState(section) }

    var handoverFDs: [(name: String, fd: Int32)] { backend.handover }
    /// A console file only: sockets die with the process, and a restarted one listens anew.
    var storedFDs: [(name: String, fd: Int32)] { backend.handover.filter { $0.name == SerialBackend.fileHandoverName } }
}
