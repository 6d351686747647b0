import Shared

/// The UART's registers, FIFO contents and pending interrupt, as a state section. The
/// interrupt line level is derived from these, so it is re-driven after a restore.
extension Serial16550 {
    static let sectionName = "serial.com1"
    static let sectionVersion: UInt32 = 1

    func encodeState() -> [UInt8] {
        var encoder = StateEncoder()
        for register in [ier, lcr, mcr, scr, dll, dlm, fcr, lastReceived, msr] { encoder.u8(register) }
        encoder.bool(overrun)
        encoder.bool(thrInterruptPending)
        encoder.lengthPrefixedBytes(rxFIFO)
        return encoder.bytes
    }

    static func decodeState(_ section: StateSection) throws -> Serial16550 {
        guard section.version == sectionVersion else {
            throw StateFormatError.malformed("section '\(section.name)' has version \(section.version); this cprvmm reads version \(sectionVersion)")
        }
        var decoder = StateDecoder(section.payload, section: section.name)
        var uart = Serial16550()
        uart.ier = try decoder.u8()
        uart.lcr = try decoder.u8()
        uart.mcr = try decoder.u8()
        uart.scr = try decoder.u8()
        uart.dll = try decoder.u8()
        uart.dlm = try decoder.u8()
        uart.fcr = try decoder.u8()
        uart.lastReceived = try decoder.u8()
        uart.msr = try decoder.u8()
        uart.overrun = try decoder.bool()
        uart.thrInterruptPending = try decoder.bool()
        uart.rxFIFO = try decoder.lengthPrefixedBytes(limit: fifoSize)
        try decoder.finish()
        if let problem = uart.impossibleState {
            throw StateFormatError.malformed("section '\(section.name)': \(problem); the state is damaged")
        }
        return uart
    }

    /// What no 16550 (and so no state this model saved) can hold, if anything: a CRC-valid but
    /// damaged state must be refused, not resume a UART that silently swallows the console.
    var impossibleState: String? {
        func hex(_ value: UInt8) -> String { "0x" + String(value, radix: 16) }
        if ier & 0xF0 != 0 { return "IER \(hex(ier)) has bits a 16550 never holds (0xf0)" }
        if mcr & 0xE0 != 0 { return "MCR \(hex(mcr)) has bits a 16550 never holds (0xe0)" }
        if fcr & ~0xC1 != 0 { return "FCR \(hex(fcr)) has bits this UART never keeps (only 0xc1)" }
        if rxFIFO.count > receiveDepth { return "\(rxFIFO.count) received bytes waiting, more than the \(receiveDepth) the receiver holds" }
        var expected = self
        expected.msr &= 0x0F
        expected.updateModemLines()
        if msr & 0xF0 != expected.msr & 0xF0 {
            return "MSR \(hex(msr)) does not match the modem lines MCR \(hex(mcr)) gives (\(hex(expected.msr & 0xF0)))"
        }
        return nil
    }
}
