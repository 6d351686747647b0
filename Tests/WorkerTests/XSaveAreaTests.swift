import CKVM
import Testing

@testable import Worker

struct XSaveAreaTests {
    /// An XSAVE area in the standard format with XSTATE_BV = `features`.
    func area(features: UInt64, extendedByte: (offset: Int, value: UInt8)? = nil) -> ckvm_xsave {
        var area = ckvm_xsave()
        withUnsafeMutableBytes(of: &area) { bytes in
            bytes.storeBytes(of: 0x1F80, toByteOffset: 24, as: UInt32.self)  // MXCSR
            bytes.storeBytes(of: features, toByteOffset: XSaveArea.headerOffset, as: UInt64.self)
            if let extendedByte { bytes[extendedByte.offset] = extendedByte.value }
        }
        return area
    }

    @Test("x87 and SSE state passes unchanged")
    func legacyOnly() throws {
        let original = area(features: 0x3)
        let adapted = try XSaveArea.adapted(original)
        #expect(XSaveArea.features(adapted) == 0x3)
        #expect(withUnsafeBytes(of: adapted, Array.init) == withUnsafeBytes(of: original, Array.init))
    }

    @Test("a PKRU component in its init state (a host kernel with PKU lists it) is dropped from XSTATE_BV")
    func initPKRUDropped() throws {
        let adapted = try XSaveArea.adapted(area(features: 0x203))
        #expect(XSaveArea.features(adapted) == 0x3)
    }

    @Test("a component beyond SSE that holds data is refused, named")
    func usedComponentRefused() {
        // The AVX upper halves start at 576 in the standard format.
        #expect(throws: ConfigurationError.self) { try XSaveArea.adapted(area(features: 0x7, extendedByte: (600, 1))) }
        let error = #expect(throws: ConfigurationError.self) { try XSaveArea.adapted(area(features: 0x207, extendedByte: (2700, 0x55))) }
        #expect(error?.description.contains("XSAVE components 0x204 (AVX, PKRU)") == true, "\(String(describing: error))")
    }
}
