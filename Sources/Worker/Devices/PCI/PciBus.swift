/// What a PCI function's BAR decodes to.
enum PciBarTarget {
    case io(PortDevice)
    case memory(MmioDevice)
}

/// A function on the PCI bus. The bus owns its config space accesses (under the bus lock);
/// the function says what its BARs reach and may watch config writes.
protocol PciFunction: AnyObject {
    /// The name used in mappings and logs ("virtio-blk disk0").
    var pciName: String { get }
    /// The device's `id=` (QMP's qdev_id), "" for the chipset.
    var qdevID: String { get }
    /// Read and written only under the bus lock (PciBus.withConfig).
    var config: PciConfigSpace { get set }
    func barTarget(_ index: Int) -> PciBarTarget?
    /// After a guest's config write (bus lock held); `offset`, `size` as written.
    func configWritten(offset: Int, size: Int)
    /// BAR `index` now decodes at `address` (nil: nowhere); bus lock held.
    func barMapped(_ index: Int, at address: UInt64?)
}

extension PciFunction {
    var qdevID: String { "" }
    func configWritten(offset: Int, size: Int) {}
    func barMapped(_ index: Int, at address: UInt64?) {}
}

/// PCI bus 0 behind configuration mechanism #1: the address register at 0xcf8 (32-bit
/// accesses only; a byte at 0xcf9 is PIIX's reset control) and the data window at 0xcfc-0xcff.
/// BARs are mapped on the port and MMIO buses as the guest programs and enables them.
final class PciBus: PortDevice {
    static let configAddressPort: UInt16 = 0xCF8
    static let resetControlPort: UInt16 = 0xCF9
    static let portCount: UInt16 = 8

    private let lock = Lock()
    private let buses: Buses
    private var functions: [UInt8: PciFunction] = [:]
    private(set) var configAddress: UInt32 = 0
    /// What each BAR is mapped at now, by (devfn, index).
    private var mapped: [Int: (name: String, kind: PciConfigSpace.BarKind, base: UInt64)] = [:]
    private let badMappingLog = RateLimiter()
    /// A guest wrote the reset bits of 0xcf9 (or port 0x92's): the machine decides.
    var onResetRequest: (String) -> Void = { _ in }
    /// Sets a legacy IRQ line (the routing decided here, the line driven by the machine).
    var setIrqLine: (UInt32, Bool) -> Void = { _, _ in }
    /// The PIRQ route registers (PIIX3 0x60-0x63), set by the ISA bridge function.
    var pirqRoute: (Int) -> UInt8? = { _ in nil }

    init(buses: Buses) { self.buses = buses }

    /// Puts `function` at `slot`.`function`; a taken address is a configuration error.
    func add(_ function: PciFunction, slot: UInt8, function number: UInt8 = 0) throws {
        guard slot < 32, number < 8 else { throw ConfigurationError("\(function.pciName): no PCI address \(slot).\(number) on bus 0") }
        let devfn = slot << 3 | number
        try lock.withLock {
            if let other = functions[devfn] {
                throw ConfigurationError("\(function.pciName): PCI address 00:\(PciBus.hex(slot)).\(number) is taken by \(other.pciName)")
            }
            functions[devfn] = function
        }
    }

    /// Every function, by devfn.
    var allFunctions: [(devfn: UInt8, function: PciFunction)] {
        lock.withLock { functions.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } }
    }

    static func hex(_ value: UInt8) -> String { value < 16 ? "0" + String(value, radix: 16) : String(value, radix: 16) }

    /// Runs `body` on `function`'s config space under the bus lock.
    func withConfig<T>(_ function: PciFunction, _ body: (inout PciConfigSpace) throws -> T) rethrows -> T {
        try lock.withLock { try body(&function.config) }
    }

    func portRead(offset: UInt16, into data: UnsafeMutableRawBufferPointer) {
        let value: UInt32 = lock.withLock {
            if offset < 4 {
                // Only a 32-bit access reaches the address register; a byte at 0xcf9 is reset control.
                if data.count == 4 && offset == 0 { return configAddress }
                return 0
            }
            guard configAddress & 0x8000_0000 != 0, let function = addressedFunction() else { return 0xFFFF_FFFF }
            let register = Int(configAddress & 0xFC) + Int(offset - 4)
            return function.config.read(register, size: data.count)
        }
        for i in 0..<data.count { data[i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    func portWrite(offset: UInt16, from data: UnsafeRawBufferPointer) {
        var value: UInt32 = 0
        for (i, byte) in data.prefix(4).enumerated() { value |= UInt32(byte) << (8 * i) }
        if offset < 4 {
            if data.count == 4 && offset == 0 {
                lock.withLock { configAddress = value & 0x80FF_FFFC }
            } else if offset == 1 && data.count == 1 && value & 0x4 != 0 {
                onResetRequest("the guest asked for a reset through port 0xcf9")
            }
            return
        }
        lock.withLock {
            guard configAddress & 0x8000_0000 != 0, let function = addressedFunction() else { return }
            let register = Int(configAddress & 0xFC) + Int(offset - 4)
            let size = min(data.count, 4)
            function.config.write(register, size: size, value: value)
            function.configWritten(offset: register, size: size)
            let touchesBars = register < PciConfigSpace.barOffset + 24 && register + size > PciConfigSpace.commandOffset
            let touchesROM = register < PciConfigSpace.romOffset + 4 && register + size > PciConfigSpace.romOffset
            if touchesBars || touchesROM {
                refreshBarsLocked(devfn: UInt8((configAddress >> 8) & 0xFF), function: function)
            }
        }
    }

    /// A config write from the VMM itself, with the effects a guest's would have.
    func hostConfigWrite(_ function: PciFunction, offset: Int, size: Int, value: UInt32) {
        lock.withLock {
            guard let devfn = functions.first(where: { $0.value === function })?.key else { return }
            function.config.write(offset, size: size, value: value)
            function.configWritten(offset: offset, size: size)
            refreshBarsLocked(devfn: devfn, function: function)
        }
    }

    /// Only bus 0 exists; other buses read as empty.
    private func addressedFunction() -> PciFunction? {
        guard (configAddress >> 16) & 0xFF == 0 else { return nil }
        return functions[UInt8((configAddress >> 8) & 0xFF)]
    }

    /// Maps `function`'s BARs where its config space says (after a load, say).
    func refreshBars(_ function: PciFunction) {
        lock.withLock {
            guard let devfn = functions.first(where: { $0.value === function })?.key else { return }
            refreshBarsLocked(devfn: devfn, function: function)
        }
    }

    private func refreshBarsLocked(devfn: UInt8, function: PciFunction) {
        for index in 0...PciConfigSpace.romIndex {
            guard let bar = function.config.bar(index) else { continue }
            let key = Int(devfn) << 3 | index
            let wanted = function.config.barAddress(index)
            if let current = mapped[key] {
                if current.base == wanted { continue }
                switch current.kind {
                case .io: buses.ports.unregister(name: current.name, base: UInt16(current.base))
                case .memory32, .memory64: buses.mmio.unregister(name: current.name, base: current.base)
                }
                mapped[key] = nil
                function.barMapped(index, at: nil)
            }
            guard let base = wanted, let target = function.barTarget(index) else { continue }
            let name = index == PciConfigSpace.romIndex ? "\(function.pciName) ROM" : "\(function.pciName) BAR\(index)"
            do {
                switch target {
                case .io(let device): try buses.ports.register(device, name: name, base: UInt16(base), count: UInt16(bar.size))
                case .memory(let device): try buses.mmio.register(device, name: name, base: base, size: bar.size)
                }
                mapped[key] = (name, bar.kind, base)
                function.barMapped(index, at: base)
            } catch {
                // Real hardware would decode both and collide; here the BAR stays unmapped and
                // only this guest's device stops answering.
                badMappingLog.log("\(error) (placed there by the guest); left unmapped")
            }
        }
    }

    /// Drives INTx of the function at `devfn` through PIIX's PIRQ routing, as a PC does:
    /// pin A of slot S uses PIRQ (S + pin - 1) mod 4. Lines shared by several functions are
    /// the OR of them all.
    func setIntx(_ function: PciFunction, level: Bool) {
        lock.withLock {
            guard let devfn = functions.first(where: { $0.value === function })?.key else { return }
            let pin = Int(function.config.interruptPin)
            guard pin > 0 else { return }
            function.config.setInterruptStatus(level)
            let pirq = (Int(devfn >> 3) + pin - 1) & 3
            intxLevels[devfn] = level ? pirq : nil
            let asserted = intxLevels.values.contains(pirq)
            guard let route = pirqRoute(pirq), route & 0x80 == 0, route & 0xF != 0 else { return }
            setIrqLine(UInt32(route & 0xF), asserted)
        }
    }

    /// Asserted INTx lines, devfn → PIRQ.
    private var intxLevels: [UInt8: Int] = [:]

    /// For the state section of the host bridge.
    func setConfigAddress(_ value: UInt32) { lock.withLock { configAddress = value } }
}
