/// A register-level model of a 16550A UART, the PC's COM port.
///
/// It is a plain value with no I/O, locking or KVM in it so that the whole device can be
/// compared, copied and later serialised for migration: every bit of guest-visible state
/// lives in the stored properties below, and everything else (LSR, IIR, the IRQ level) is
/// derived from them on demand so the two can never disagree.
///
/// Transmission is modelled as instantaneous: a THR write hands the byte straight back to
/// the caller. Hence there is no TX FIFO, and THRE/TEMT are always set.
///
/// Reset values follow the datasheet rather than QEMU where they differ: MCR is 0 (QEMU
/// presets OUT2), so no IRQ reaches the PIC until the guest driver sets OUT2, as on real
/// hardware. The divisor resets to 12 (9600 baud) as in QEMU, which firmware and early
/// console code often assume without programming it.
public struct Serial16550: Equatable, Sendable {
    public static let portCount: UInt16 = 8
    public static let fifoSize = 16

    // Register offsets relative to the base port.
    static let dataOffset: UInt16 = 0      // RBR/THR, DLL when DLAB=1
    static let ierOffset: UInt16 = 1       // IER, DLM when DLAB=1
    static let iirOffset: UInt16 = 2       // IIR (read) / FCR (write)
    static let lcrOffset: UInt16 = 3
    static let mcrOffset: UInt16 = 4
    static let lsrOffset: UInt16 = 5
    static let msrOffset: UInt16 = 6
    static let scrOffset: UInt16 = 7

    // Bits the model gives meaning to.
    static let ierRDA: UInt8 = 0x01, ierTHRE: UInt8 = 0x02, ierRLS: UInt8 = 0x04, ierMS: UInt8 = 0x08
    static let lcrDLAB: UInt8 = 0x80
    static let mcrOUT2: UInt8 = 0x08, mcrLoop: UInt8 = 0x10
    static let lsrDR: UInt8 = 0x01, lsrOE: UInt8 = 0x02, lsrTHRE: UInt8 = 0x20, lsrTEMT: UInt8 = 0x40
    static let fcrEnable: UInt8 = 0x01, fcrClearRX: UInt8 = 0x02
    static let iirNone: UInt8 = 0x01, iirMS: UInt8 = 0x00, iirTHRE: UInt8 = 0x02
    static let iirRDA: UInt8 = 0x04, iirRLS: UInt8 = 0x06, iirTimeout: UInt8 = 0x0C
    static let iirFIFOBits: UInt8 = 0xC0
    /// CTS|DSR|DCD: what an attached, ready modem presents, so drivers that wait for
    /// carrier or clear-to-send before transmitting do not stall.
    static let connectedModemLines: UInt8 = 0xB0

    // MARK: Stored state (the migration payload)

    var ier: UInt8 = 0
    var lcr: UInt8 = 0
    var mcr: UInt8 = 0
    var scr: UInt8 = 0
    var dll: UInt8 = 12
    var dlm: UInt8 = 0
    /// Only the FIFO enable bit and the RX trigger bits are remembered: the clear bits are
    /// self-resetting commands, and FCR cannot be read back.
    var fcr: UInt8 = 0
    /// Received bytes not yet read by the guest, oldest first. Never longer than the
    /// current receive depth (16 with FIFOs, 1 as a 16450 holding register).
    var rxFIFO: [UInt8] = []
    /// What RBR shows once drained; the real register keeps its last character.
    var lastReceived: UInt8 = 0
    /// LSR.OE. Only reachable via loopback, because host input is flow-controlled.
    var overrun = false
    /// The THRE interrupt is an event, not a level: it is raised when THR empties and
    /// withdrawn by reading IIR or writing THR, so it needs its own latch.
    var thrInterruptPending = false
    /// Modem status lines (high nibble) plus the delta bits latched since the last read.
    var msr: UInt8 = Serial16550.connectedModemLines

    public init() {}

    // MARK: Guest access

    /// A guest read of the register at `offset` (0...7). May change state (pops RBR, clears
    /// OE / THRE interrupt / MSR deltas). Offsets outside the block read as a floating bus
    /// rather than trapping, so a mis-routed access cannot take the VMM down.
    public mutating func read(offset: UInt16) -> UInt8 {
        switch offset {
        case Self.dataOffset:
            if dlab { return dll }
            if !rxFIFO.isEmpty { lastReceived = rxFIFO.removeFirst() }
            return lastReceived
        case Self.ierOffset:
            return dlab ? dlm : ier
        case Self.iirOffset:
            let id = pendingInterrupt
            // Reading IIR is the acknowledgement for THRE (datasheet table 4); the other
            // sources clear when their cause is serviced.
            if id == Self.iirTHRE { thrInterruptPending = false }
            return id | (fifoEnabled ? Self.iirFIFOBits : 0)
        case Self.lcrOffset:
            return lcr
        case Self.mcrOffset:
            return mcr
        case Self.lsrOffset:
            let value = lineStatus
            overrun = false
            return value
        case Self.msrOffset:
            let value = msr
            msr &= 0xF0
            return value
        case Self.scrOffset:
            return scr
        default:
            return 0xFF
        }
    }

    /// A guest write. Returns the byte to send to the backend when the guest wrote THR
    /// outside loopback, else nil.
    public mutating func write(offset: UInt16, value: UInt8) -> UInt8? {
        switch offset {
        case Self.dataOffset:
            if dlab {
                dll = value
                return nil
            }
            // The byte leaves (or loops back) at once, so THR is empty again straight away:
            // the write both acknowledges and re-arms the THRE interrupt.
            thrInterruptPending = ier & Self.ierTHRE != 0
            if loopback {
                loopBack(value)
                return nil
            }
            return value
        case Self.ierOffset:
            if dlab {
                dlm = value
                return nil
            }
            let enablingTHRE = value & Self.ierTHRE != 0 && ier & Self.ierTHRE == 0
            ier = value & 0x0F
            // Enabling ETBEI while THR is empty (always, here) interrupts immediately; drivers
            // rely on this to kick off transmission. Disabling drops any stale event.
            if enablingTHRE { thrInterruptPending = true }
            if ier & Self.ierTHRE == 0 { thrInterruptPending = false }
        case Self.iirOffset:
            writeFCR(value)
        case Self.lcrOffset:
            lcr = value
        case Self.mcrOffset:
            mcr = value & 0x1F
            updateModemLines()
        case Self.scrOffset:
            scr = value
        default:
            break // LSR and MSR are read-only; outside the block is ignored.
        }
        return nil
    }

    // MARK: Host side

    /// Host input arriving from the backend. Accepts bytes while the RX FIFO has room (1
    /// byte when FIFOs are disabled — the 16450 holding register), returns how many were
    /// taken; the caller keeps the rest and retries later (that is flow control: nothing is
    /// lost).
    public mutating func receive(_ bytes: UnsafeRawBufferPointer) -> Int {
        let taken = min(receiveCapacity, bytes.count)
        rxFIFO.append(contentsOf: bytes.prefix(taken))
        return taken
    }

    /// Convenience for callers holding an array.
    public mutating func receive(_ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBytes { receive($0) }
    }

    /// How many bytes receive() would accept now. Zero in loopback, where the datasheet
    /// disconnects the serial input: the host's bytes wait rather than mix with the
    /// guest's self-test pattern.
    public var receiveCapacity: Int {
        loopback ? 0 : receiveDepth - rxFIFO.count
    }

    /// The level of the interrupt line (IRQ 4) the device drives now: true when an enabled
    /// interrupt condition is pending and MCR OUT2 is set (as on a PC: OUT2 gates the IRQ
    /// buffer, which is how drivers keep an unused port off a shared line).
    public var interruptLine: Bool {
        mcr & Self.mcrOUT2 != 0 && pendingInterrupt != Self.iirNone
    }

    /// The programmed divisor; baud rate is 115200 / divisor.
    public var divisor: UInt16 { UInt16(dlm) << 8 | UInt16(dll) }

    // MARK: Derived state

    var dlab: Bool { lcr & Self.lcrDLAB != 0 }
    var loopback: Bool { mcr & Self.mcrLoop != 0 }
    var fifoEnabled: Bool { fcr & Self.fcrEnable != 0 }
    var receiveDepth: Int { fifoEnabled ? Self.fifoSize : 1 }

    var rxTriggerLevel: Int {
        switch fcr >> 6 {
        case 0: return 1
        case 1: return 4
        case 2: return 8
        default: return 14
        }
    }

    var lineStatus: UInt8 {
        var value = Self.lsrTHRE | Self.lsrTEMT
        if !rxFIFO.isEmpty { value |= Self.lsrDR }
        if overrun { value |= Self.lsrOE }
        return value
    }

    /// The IIR identification (without FIFO bits) of the highest-priority enabled source.
    /// The character timeout is reported as soon as data sits below the trigger level:
    /// without a clock we cannot wait four character times, and reporting early only makes
    /// a guest collect its bytes sooner, which every driver handles like RDA.
    var pendingInterrupt: UInt8 {
        if ier & Self.ierRLS != 0 && overrun { return Self.iirRLS }
        if ier & Self.ierRDA != 0 && !rxFIFO.isEmpty {
            if !fifoEnabled || rxFIFO.count >= rxTriggerLevel { return Self.iirRDA }
            return Self.iirTimeout
        }
        if ier & Self.ierTHRE != 0 && thrInterruptPending { return Self.iirTHRE }
        if ier & Self.ierMS != 0 && msr & 0x0F != 0 { return Self.iirMS }
        return Self.iirNone
    }

    // MARK: Helpers

    /// FCR bits other than bit 0 are only programmed while bit 0 is set (datasheet), and
    /// changing the FIFO mode empties the FIFOs, so a stale byte cannot exceed the new depth.
    mutating func writeFCR(_ value: UInt8) {
        let enable = value & Self.fcrEnable != 0
        if enable != fifoEnabled { rxFIFO.removeAll() }
        guard enable else {
            fcr &= ~Self.fcrEnable
            return
        }
        if value & Self.fcrClearRX != 0 { rxFIFO.removeAll() }
        fcr = value & 0xC1
    }

    /// A looped-back byte enters the receiver like a wire byte would, so unlike host input
    /// it can overrun: with FIFOs the new byte is lost, as a 16450 it overwrites the holding
    /// register. This is the one way OE can occur in this model.
    mutating func loopBack(_ value: UInt8) {
        if rxFIFO.count < receiveDepth {
            rxFIFO.append(value)
            return
        }
        overrun = true
        if !fifoEnabled { rxFIFO[rxFIFO.count - 1] = value }
    }

    /// Recomputes the modem input lines and latches the delta bits, so a guest toggling MCR
    /// in loopback sees both the levels and the modem-status interrupt a real chip gives.
    mutating func updateModemLines() {
        var lines = Self.connectedModemLines
        if loopback {
            lines = (mcr & 0x01) << 5      // DTR  -> DSR
                | (mcr & 0x02) << 3        // RTS  -> CTS
                | (mcr & 0x04) << 4        // OUT1 -> RI
                | (mcr & 0x08) << 4        // OUT2 -> DCD
        }
        let old = msr & 0xF0
        let changed = old ^ lines
        var deltas = msr & 0x0F
        if changed & 0x10 != 0 { deltas |= 0x01 }                  // DCTS
        if changed & 0x20 != 0 { deltas |= 0x02 }                  // DDSR
        if old & 0x40 != 0 && lines & 0x40 == 0 { deltas |= 0x04 } // TERI: trailing edge only
        if changed & 0x80 != 0 { deltas |= 0x08 }                  // DDCD
        msr = lines | deltas
    }
}
