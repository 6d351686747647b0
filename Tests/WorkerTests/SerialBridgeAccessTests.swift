import Testing
@testable import Worker

/// What a vCPU bridge may do at the UART on its own while the device is frozen (VcpuBridge):
/// the promise is that serving these accesses without the device, in any number and order,
/// leaves the device exactly as performing them would.
@Suite struct SerialBridgeAccessTests {
    let thr: UInt16 = 0, ier: UInt16 = 1, iir: UInt16 = 2, lcr: UInt16 = 3, mcr: UInt16 = 4, lsr: UInt16 = 5

    func port() throws -> SerialPort {
        SerialPort(backend: try SerialBackend(.null)) { _ in }
    }

    func write(_ port: SerialPort, _ offset: UInt16, _ value: UInt8) {
        withUnsafeBytes(of: value) { port.portWrite(offset: offset, from: $0) }
    }

    func read(_ port: SerialPort, _ offset: UInt16) -> UInt8 {
        var value: UInt8 = 0
        withUnsafeMutableBytes(of: &value) { port.portRead(offset: offset, into: $0) }
        return value
    }

    @Test func anIdleUARTLetsTheGuestPrint() throws {
        let port = try port()
        #expect(port.bridgeAccess(offset: lsr).constantRead == 0x60)
        #expect(port.bridgeAccess(offset: thr).writeLogged)
        // Registers whose writes change the device stop the bridge.
        for offset in [ier, lcr, mcr] { #expect(!port.bridgeAccess(offset: offset).writeLogged, "offset \(offset)") }
    }

    @Test func theConstantIsWhatTheDeviceAnswers() throws {
        let port = try port()
        for offset: UInt16 in 0..<8 {
            guard let constant = port.bridgeAccess(offset: offset).constantRead else { continue }
            let before = port.uartState
            #expect(read(port, offset) == constant, "offset \(offset)")
            #expect(port.uartState == before, "a read at offset \(offset) called constant changed the UART")
        }
    }

    @Test func aLoggedWriteLeavesTheStateAsItWas() throws {
        let port = try port()
        let before = port.uartState
        for byte in Array("any text\n".utf8) + [0, 0xFF] {
            #expect(port.bridgeAccess(offset: thr).writeLogged)
            write(port, thr, byte)
        }
        #expect(port.uartState == before)
    }

    @Test func loopbackOrADivisorLatchMakesTHRWritesStop() throws {
        let port = try port()
        write(port, mcr, 0x10)  // loopback: a THR write lands in the receive FIFO
        #expect(!port.bridgeAccess(offset: thr).writeLogged)
        write(port, mcr, 0)
        write(port, lcr, 0x80)  // DLAB: offset 0 is the divisor latch
        #expect(!port.bridgeAccess(offset: thr).writeLogged)
    }

    @Test func anAcknowledgedTHREInterruptMakesTHRWritesStop() throws {
        let port = try port()
        write(port, ier, 0x02)
        #expect(port.bridgeAccess(offset: iir).constantRead == nil, "reading IIR acknowledges the pending THRE interrupt")
        _ = read(port, iir)
        // The next THR write re-arms the interrupt: a state change only the device can make.
        #expect(!port.bridgeAccess(offset: thr).writeLogged)
    }

    @Test func receivedInputIsForTheDevice() throws {
        let port = try port()
        _ = "ab".utf8.withContiguousStorageIfAvailable { port.receive(UnsafeRawBufferPointer($0)) }
        #expect(port.bridgeAccess(offset: thr).constantRead == nil, "reading RBR pops the FIFO")
        #expect(port.bridgeAccess(offset: lsr).constantRead == 0x61, "LSR says data ready and stays so")
    }
}
