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
        return uart
    }
}
