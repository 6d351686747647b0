import Testing
@testable import Worker

@Suite struct Serial16550Tests {
    // Offsets, spelled out so a test reads like a guest driver.
    let rbr: UInt16 = 0, ier: UInt16 = 1, iir: UInt16 = 2, lcr: UInt16 = 3
    let mcr: UInt16 = 4, lsr: UInt16 = 5, msr: UInt16 = 6, scr: UInt16 = 7

    @Test func resetValues() {
        var uart = Serial16550()
        #expect(uart.read(offset: ier) == 0)
        #expect(uart.read(offset: iir) == 0x01)
        #expect(uart.read(offset: lcr) == 0)
        #expect(uart.read(offset: mcr) == 0)
        #expect(uart.read(offset: lsr) == 0x60)
        #expect(uart.read(offset: msr) == 0xB0)
        #expect(uart.divisor == 12)
        #expect(!uart.interruptLine)
    }

    @Test func thrWriteReturnsByte() {
        var uart = Serial16550()
        #expect(uart.write(offset: rbr, value: 0x41) == 0x41)
        #expect(uart.write(offset: scr, value: 0x41) == nil)
        #expect(uart.read(offset: lsr) & 0x60 == 0x60)
    }

    @Test func dlabSwitchesToDivisorLatch() {
        var uart = Serial16550()
        _ = uart.write(offset: ier, value: 0x05)
        _ = uart.write(offset: lcr, value: 0x83)
        #expect(uart.write(offset: rbr, value: 0x01) == nil)   // DLL, not transmitted
        _ = uart.write(offset: ier, value: 0x02)                // DLM
        #expect(uart.read(offset: rbr) == 0x01)
        #expect(uart.read(offset: ier) == 0x02)
        #expect(uart.divisor == 0x0201)
        _ = uart.write(offset: lcr, value: 0x03)
        #expect(uart.read(offset: ier) == 0x05)
        #expect(uart.write(offset: rbr, value: 0x42) == 0x42)
        #expect(uart.divisor == 0x0201)
    }

    @Test func ierKeepsOnlyLowNibble() {
        var uart = Serial16550()
        _ = uart.write(offset: ier, value: 0xFF)
        #expect(uart.read(offset: ier) == 0x0F)
    }

    @Test func receivedBytesComeOutInOrder() {
        var uart = Serial16550()
        _ = uart.write(offset: iir, value: 0x01)
        #expect(uart.read(offset: lsr) & 0x01 == 0)
        #expect(uart.receive([0x61, 0x62, 0x63]) == 3)
        #expect(uart.read(offset: lsr) & 0x01 == 0x01)
        #expect(uart.read(offset: rbr) == 0x61)
        #expect(uart.read(offset: rbr) == 0x62)
        #expect(uart.read(offset: lsr) & 0x01 == 0x01)
        #expect(uart.read(offset: rbr) == 0x63)
        #expect(uart.read(offset: lsr) & 0x01 == 0)
    }

    @Test func fifoCapsAtSixteen() {
        var uart = Serial16550()
        _ = uart.write(offset: iir, value: 0x01)
        let input = (0..<20).map { UInt8($0) }
        #expect(uart.receive(input) == 16)
        #expect(uart.receiveCapacity == 0)
        #expect(uart.receive(Array(input[16...])) == 0)
        #expect(uart.read(offset: rbr) == 0)
        #expect(uart.receiveCapacity == 1)
        #expect(uart.receive(Array(input[16...])) == 1)
        let drained = (0..<16).map { _ in uart.read(offset: rbr) }
        #expect(drained == (1...16).map { UInt8($0) })
        #expect(uart.read(offset: lsr) & 0x03 == 0)   // no data, and no overrun through receive
    }

    @Test func nonFIFOModeHoldsOneByte() {
        var uart = Serial16550()
        #expect(uart.receiveCapacity == 1)
        #expect(uart.receive([1, 2, 3]) == 1)
        #expect(uart.receive([2, 3]) == 0)
        #expect(uart.read(offset: rbr) == 1)
        #expect(uart.receive([2, 3]) == 1)
        #expect(uart.read(offset: lsr) & 0x02 == 0)
    }

    @Test func receiveFromRawBuffer() {
        var uart = Serial16550()
        _ = uart.write(offset: iir, value: 0x01)
        let bytes: [UInt8] = [9, 8, 7]
        #expect(bytes.withUnsafeBytes { uart.receive($0) } == 3)
        #expect(uart.read(offset: rbr) == 9)
    }

    @Test func overrunViaLoopbackIsClearedByReadingLSR() {
        var uart = Serial16550()
        _ = uart.write(offset: iir, value: 0x01)
        _ = uart.write(offset: ier, value: 0x04)                     // receiver line status
        _ = uart.write(offset: mcr, value: 0x18)                     // loopback + OUT2
        for i in 0..<17 { _ = uart.write(offset: rbr, value: UInt8(i)) }
        #expect(uart.interruptLine)
        #expect(uart.read(offset: iir) == 0xC6)
        #expect(uart.read(offset: lsr) == 0x63)                      // DR | OE | THRE | TEMT
        #expect(uart.read(offset: lsr) == 0x61)                      // OE cleared by the read
        #expect(uart.read(offset: iir) == 0xC1)
        #expect(!uart.interruptLine)
        // With a FIFO the 17th byte is the one lost.
        let drained = (0..<16).map { _ in uart.read(offset: rbr) }
        #expect(drained == (0..<16).map { UInt8($0) })
    }

    @Test func overrunWithoutFIFOOverwritesHoldingRegister() {
        var uart = Serial16550()
        _ = uart.write(offset: mcr, value: 0x10)
        _ = uart.write(offset: rbr, value: 1)
        _ = uart.write(offset: rbr, value: 2)
        #expect(uart.read(offset: lsr) & 0x03 == 0x03)
        #expect(uart.read(offset: rbr) == 2)
    }

    @Test func rxDataOutranksTHRE() {
        var uart = Serial16550()
        _ = uart.write(offset: ier, value: 0x03)
        _ = uart.receive([0x55])
        #expect(uart.read(offset: iir) == 0x04)
        _ = uart.read(offset: rbr)
        #expect(uart.read(offset: iir) == 0x02)
    }

    @Test func threInterruptClearedByIIRReadAndReraisedByTHRWrite() {
        var uart = Serial16550()
        _ = uart.write(offset: mcr, value: 0x08)
        #expect(!uart.interruptLine)
        _ = uart.write(offset: ier, value: 0x02)
        #expect(uart.interruptLine)
        #expect(uart.read(offset: iir) == 0x02)
        #expect(!uart.interruptLine)
        #expect(uart.read(offset: iir) == 0x01)
        _ = uart.write(offset: rbr, value: 0x41)
        #expect(uart.interruptLine)
        #expect(uart.read(offset: iir) == 0x02)
    }

    @Test func threNotRaisedWhileDisabled() {
        var uart = Serial16550()
        _ = uart.write(offset: mcr, value: 0x08)
        _ = uart.write(offset: rbr, value: 0x41)
        #expect(!uart.interruptLine)
        #expect(uart.read(offset: iir) == 0x01)
    }

    @Test func interruptLineRequiresOUT2() {
        var uart = Serial16550()
        _ = uart.write(offset: ier, value: 0x01)
        _ = uart.receive([1])
        #expect(uart.read(offset: iir) == 0x04)   // pending inside the chip...
        #expect(!uart.interruptLine)              // ...but gated off the bus
        _ = uart.write(offset: mcr, value: 0x08)
        #expect(uart.interruptLine)
        _ = uart.read(offset: rbr)
        #expect(!uart.interruptLine)
    }

    @Test func fcrClearsRXFIFO() {
        var uart = Serial16550()
        _ = uart.write(offset: iir, value: 0x01)
        _ = uart.receive([1, 2, 3])
        _ = uart.write(offset: iir, value: 0x03)
        #expect(uart.read(offset: lsr) & 0x01 == 0)
        #expect(uart.receiveCapacity == 16)
        #expect(uart.read(offset: iir) & 0xC0 == 0xC0)   // clearing kept FIFOs on
    }

    @Test func triggerLevelTurnsTimeoutIntoDataAvailable() {
        var uart = Serial16550()
        _ = uart.write(offset: iir, value: 0x81)          // FIFO on, trigger 8
        _ = uart.write(offset: ier, value: 0x01)
        _ = uart.receive([1, 2, 3, 4, 5, 6, 7])
        #expect(uart.read(offset: iir) == 0xCC)
        _ = uart.receive([8])
        #expect(uart.read(offset: iir) == 0xC4)
        _ = uart.write(offset: iir, value: 0xC1)          // trigger 14
        #expect(uart.read(offset: iir) == 0xCC)
        _ = uart.write(offset: iir, value: 0x01)          // trigger 1
        #expect(uart.read(offset: iir) == 0xC4)
    }

    @Test func iirReportsFIFOBits() {
        var uart = Serial16550()
        #expect(uart.read(offset: iir) == 0x01)
        _ = uart.write(offset: iir, value: 0x01)
        #expect(uart.read(offset: iir) == 0xC1)
        _ = uart.write(offset: iir, value: 0x00)
        #expect(uart.read(offset: iir) == 0x01)
    }

    @Test func disablingFIFOsDropsBufferedBytes() {
        var uart = Serial16550()
        _ = uart.write(offset: iir, value: 0x01)
        _ = uart.receive([1, 2, 3])
        _ = uart.write(offset: iir, value: 0x00)
        #expect(uart.read(offset: lsr) & 0x01 == 0)
        #expect(uart.receiveCapacity == 1)
    }

    @Test func loopbackKeepsTransmittedBytesInside() {
        var uart = Serial16550()
        _ = uart.write(offset: iir, value: 0x01)
        _ = uart.write(offset: mcr, value: 0x10)
        #expect(uart.write(offset: rbr, value: 0x5A) == nil)
        #expect(uart.read(offset: lsr) & 0x01 == 0x01)
        #expect(uart.read(offset: rbr) == 0x5A)
        // The serial input is disconnected: host bytes wait for loopback to end.
        #expect(uart.receiveCapacity == 0)
        #expect(uart.receive([1]) == 0)
        _ = uart.write(offset: mcr, value: 0x00)
        #expect(uart.write(offset: rbr, value: 0x5A) == 0x5A)
        #expect(uart.receive([1]) == 1)
    }

    @Test func loopbackMSRMirrorsMCR() {
        var uart = Serial16550()
        _ = uart.write(offset: mcr, value: 0x10)
        #expect(uart.read(offset: msr) & 0xF0 == 0x00)
        _ = uart.write(offset: mcr, value: 0x11)                  // DTR -> DSR
        #expect(uart.read(offset: msr) & 0xF0 == 0x20)
        _ = uart.write(offset: mcr, value: 0x12)                  // RTS -> CTS
        #expect(uart.read(offset: msr) & 0xF0 == 0x10)
        _ = uart.write(offset: mcr, value: 0x14)                  // OUT1 -> RI
        #expect(uart.read(offset: msr) & 0xF0 == 0x40)
        _ = uart.write(offset: mcr, value: 0x18)                  // OUT2 -> DCD
        #expect(uart.read(offset: msr) & 0xF0 == 0x80)
        _ = uart.write(offset: mcr, value: 0x1A)                  // Linux's probe pattern
        #expect(uart.read(offset: msr) & 0xF0 == 0x90)
        _ = uart.write(offset: mcr, value: 0x00)
        #expect(uart.read(offset: msr) & 0xF0 == 0xB0)
    }

    @Test func msrDeltasLatchAndClearOnRead() {
        var uart = Serial16550()
        _ = uart.write(offset: ier, value: 0x08)
        _ = uart.write(offset: mcr, value: 0x08)
        #expect(!uart.interruptLine)
        _ = uart.write(offset: mcr, value: 0x1B)    // loopback: CTS, DSR, DCD stay up
        #expect(uart.read(offset: msr) == 0xB0)
        _ = uart.write(offset: mcr, value: 0x1A)    // DTR drops -> DSR drops
        #expect(uart.interruptLine)
        #expect(uart.read(offset: iir) == 0x00)
        #expect(uart.read(offset: msr) == 0x92)     // DCD|CTS, DDSR
        #expect(uart.read(offset: msr) == 0x90)
        #expect(!uart.interruptLine)
        _ = uart.write(offset: mcr, value: 0x1E)    // RI rises: no TERI yet
        #expect(uart.read(offset: msr) == 0xD0)
        _ = uart.write(offset: mcr, value: 0x1A)    // RI falls: TERI
        #expect(uart.read(offset: msr) == 0x94)
    }

    @Test func scratchRegisterStoresByte() {
        var uart = Serial16550()
        #expect(uart.write(offset: scr, value: 0xA5) == nil)
        #expect(uart.read(offset: scr) == 0xA5)
        _ = uart.write(offset: scr, value: 0x5A)
        #expect(uart.read(offset: scr) == 0x5A)
    }

    @Test func stateIsAComparableValue() {
        var a = Serial16550()
        let b = a
        #expect(a == b)
        _ = a.receive([1])
        #expect(a != b)
        var c = a
        #expect(c.read(offset: rbr) == 1)
        #expect(a.read(offset: lsr) & 0x01 == 0x01)   // the copy is independent
    }

    @Test func outOfRangeOffsetsFloat() {
        var uart = Serial16550()
        #expect(uart.read(offset: 8) == 0xFF)
        let before = uart
        #expect(uart.write(offset: 8, value: 1) == nil)
        #expect(uart == before)
    }
}

/// A restored UART must be one the model could have reached: damaged states are refused.
@Suite struct Serial16550StateCheckTests {
    @Test("states a 16550 can hold pass; impossible registers are named")
    func impossibleStates() {
        var uart = Serial16550()
        #expect(uart.impossibleState == nil)
        _ = uart.write(offset: 4, value: 0x1F)  // MCR: loopback with all outputs
        _ = uart.write(offset: 2, value: 0xC7)  // FCR: FIFOs on, cleared, trigger 14
        _ = uart.write(offset: 1, value: 0x0F)  // IER: every source
        #expect(uart.impossibleState == nil, "\(uart.impossibleState ?? "")")
        var damaged = uart
        damaged.ier = 0xFF
        #expect(damaged.impossibleState == "IER 0xff has bits a 16550 never holds (0xf0)")
        damaged = uart
        damaged.mcr = 0xFF
        #expect(damaged.impossibleState?.hasPrefix("MCR 0xff") == true)
        damaged = uart
        damaged.fcr = 0x01 | 0x08
        #expect(damaged.impossibleState?.hasPrefix("FCR 0x9") == true)
        damaged = uart
        damaged.msr = 0x0F  // no modem lines, while loopback drives them all
        #expect(damaged.impossibleState?.hasPrefix("MSR 0xf does not match") == true)
        damaged = Serial16550()
        damaged.rxFIFO = [1, 2]  // FIFOs off: one holding register
        #expect(damaged.impossibleState == "2 received bytes waiting, more than the 1 the receiver holds")
    }
}
