// The command line, parsed as QEMU parses its own (softmmu/vl.c): single-dash options,
// "--option" accepted as "-option", each option taking at most one argument (the next word),
// option arguments in QEMU's "key=value,..." syntax (OptionList). cprvmm accepts the subset of
// QEMU's options that it implements and refuses every other one with a one-line error naming
// the option: it never ignores an option silently.
//
// Repeated -m, -machine, -name, -accel and -builtin-guest options merge key by key (later wins),
// as QEMU merges them; a repeated -smp replaces the earlier one as a whole; -kernel and -bios:
// the last one wins; -serial may be given once; each -object defines one more backend.

/// What the command line asks for.
public enum CommandLineAction: Equatable, Sendable {
    case run(MachineConfig)
    case help
    case version
}

/// A command line that cprvmm cannot run; `message` is one line naming the option at fault.
public struct CommandLineError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public var description: String { message }

    public init(_ message: String) {
        self.message = message
    }
}

public enum CommandLineParser {
    /// Parses `arguments` (without argv[0]). Options are handled in order: -help or -version
    /// returns at once, an error in an earlier option is reported first.
    public static func parse(_ arguments: [String]) throws(CommandLineError) -> CommandLineAction {
        var state = ParseState()
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("-") else {
                let shown = argument.isEmpty ? "''" : argument
                throw CommandLineError(
                    "\(shown): positional arguments (disk images) are not supported by this cprvmm version")
            }
            var name = Substring(argument).dropFirst()
            if name.hasPrefix("-") { name = name.dropFirst() }
            let spelling = name.isEmpty ? argument : "-" + name
            guard let option = Option(rawValue: String(name)) else {
                if unsupportedOptions.contains(String(name)) {
                    throw CommandLineError("\(spelling): not supported by this cprvmm version")
                }
                if let equals = name.firstIndex(of: "="), Option(rawValue: String(name[..<equals])) != nil {
                    throw CommandLineError(
                        "\(spelling): unknown option (write the argument as the next word: -\(name[..<equals]) \(name[name.index(after: equals)...]))")
                }
                throw CommandLineError("\(spelling): unknown option (see cprvmm --help)")
            }
            var value = ""
            if option.takesArgument {
                guard index < arguments.endIndex else {
                    throw CommandLineError("\(spelling): missing argument")
                }
                value = arguments[index]
                index += 1
            }
            switch option {
            case .h, .help:
                return .help
            case .version:
                return .version
            default:
                try state.apply(option, spelling: spelling, value: value)
            }
        }
        return .run(try state.finish())
    }

    // MARK: - Options

    enum Option: String {
        case name, m, smp, machine, M, object, serial, kernel, bios, accel, display, qmp, monitor, S, incoming, device
        case debugcon, global, drive, blockdev, boot, netdev, nic
        case logLevel = "log-level"
        case builtinGuest = "builtin-guest"
        case enableKVM = "enable-kvm"
        case nodefaults
        case noUserConfig = "no-user-config"
        case nographic
        case h, help, version

        var takesArgument: Bool {
            switch self {
            case .name, .m, .smp, .machine, .M, .object, .serial, .kernel, .bios, .accel, .display, .builtinGuest, .qmp, .monitor,
                .incoming, .device, .debugcon, .global, .drive, .blockdev, .boot, .logLevel, .netdev, .nic:
                return true
            case .enableKVM, .nodefaults, .noUserConfig, .nographic, .S, .h, .help, .version:
                return false
            }
        }
    }

    /// QEMU options that this cprvmm version does not implement: refused as such, not as unknown.
    static let unsupportedOptions: Set<String> = [
        // Monitor, migration and process control
        "qmp-pretty", "mon", "chardev", "daemonize", "pidfile",
        "runas", "chroot", "sandbox", "preconfig", "loadvm", "only-migratable", "no-reboot",
        "no-shutdown", "action", "watchdog", "watchdog-action", "qtest", "qtest-log", "add-fd",
        "readconfig", "writeconfig", "set", "compat", "run-with", "msg", "trace",
        "plugin", "d", "D", "dfilter", "seed", "L", "enable-fips", "gdb", "s", "singlestep",
        "icount", "rtc", "overcommit", "uuid", "xen-domid", "xen-attach", "xen-domid-restrict",
        "dump-vmstate", "enable-sync-profile", "semihosting", "semihosting-config", "echr",
        "tb-size", "accel-opts", "mem-path", "mem-prealloc", "numa", "cpu",
        // Boot
        "append", "initrd", "dtb", "option-rom", "fw_cfg", "smbios", "acpitable", "no-acpi",
        "no-hpet", "pflash",
        // Block devices
        "hda", "hdb", "hdc", "hdd", "cdrom", "fda", "fdb", "mtdblock", "sd",
        "snapshot", "fsdev", "virtfs", "virtfs_synth", "iscsi",
        // Network and other devices
        "net", "usb", "usbdevice", "parallel",
        "virtioconsole", "tpmdev", "audio", "audiodev", "soundhw", "bt",
        // Display and input
        "vga", "vnc", "spice", "sdl", "curses", "full-screen", "g", "k", "no-frame", "alt-grab",
        "ctrl-grab", "no-quit", "portrait", "rotate", "show-cursor",
    ]

    // MARK: - State

    struct ParseState {
        var config = MachineConfig()
        /// "-m ARG" of the last -m, when given.
        var ramOption: String?
        /// "-machine memory-backend=ID", when given.
        var backendReference: String?
        /// "-object ARG" of each entry of config.memoryBackends.
        var backendOptions: [String] = []
        var serialOption: String?
        var monitorStdioOption: String?
        var nodefaults = false
        var nographic = false
        var kernelOption: String?
        var biosOption: String?
        var builtinGuestOption: String?
        var debugExitOption: String?
        /// Drives by id (-drive, -blockdev) with the option that defined each.
        var drives: [String: (drive: DriveConfig, context: String)] = [:]
        var diskDevices: [DiskDevice] = []
        /// Netdevs by id (-netdev, -nic) with the option that defined each.
        var netdevs: [String: (netdev: NetdevConfig, context: String)] = [:]
        var nicDevices: [NicDevice] = []

        mutating func apply(_ option: Option, spelling: String, value: String) throws(CommandLineError) {
            let context = value.isEmpty ? "\(spelling) ''" : "\(spelling) \(value)"
            switch option {
            case .name:
                let list = try options(value, impliedKey: "guest", keys: ["guest"], context: context)
                guard let guest = list["guest"], !guest.isEmpty else {
                    throw CommandLineError("\(context): missing guest name")
                }
                config.name = guest

            case .m:
                let list = try options(value, impliedKey: "size", keys: ["size"], context: context)
                guard let text = list["size"] else {
                    throw CommandLineError("\(context): missing size")
                }
                config.ramSize = try ramSize(text, defaultUnit: 1 << 20, context: context)
                ramOption = context

            case .smp:
                config.smp = try cpuCount(value, context: context)

            case .machine, .M:
                let list = try options(
                    value, impliedKey: "type", keys: ["type", "accel", "memfd-alloc", "memory-backend", "x-allow-tsc-mismatch"],
                    context: context)
                if let type = list["type"], type != "pc" {
                    throw CommandLineError("\(context): unsupported machine type '\(type)' (only 'pc' is supported)")
                }
                if let accel = list["accel"] {
                    try checkAccelerator(accel, context: context)
                }
                if let memfdAlloc = list["memfd-alloc"] {
                    config.memfdAlloc = try boolean(memfdAlloc, key: "memfd-alloc", context: context)
                }
                if let allow = list["x-allow-tsc-mismatch"] {
                    config.allowTSCMismatch = try boolean(allow, key: "x-allow-tsc-mismatch", context: context)
                }
                if let id = list["memory-backend"] {
                    try checkID(id, context: context)
                    config.memoryBackendID = id
                    backendReference = "\(spelling) memory-backend=\(id)"
                }

            case .object:
                try addMemoryBackend(value, context: context)

            case .serial:
                if let serialOption {
                    throw CommandLineError("\(context): only one -serial is supported (already given: \(serialOption))")
                }
                config.serial = try serialConfig(value, context: context)
                serialOption = context

            case .qmp:
                guard value.hasPrefix("unix:") else {
                    throw CommandLineError("\(context): unsupported QMP transport (use unix:PATH,server=on,wait=off)")
                }
                config.qmpSockets.append(try unixServerPath(String(value.dropFirst(5)), context: context))

            case .monitor:
                switch value {
                case "stdio":
                    config.monitors.append(.stdio)
                    monitorStdioOption = context
                case "none":
                    break
                case _ where value.hasPrefix("unix:"):
                    config.monitors.append(.unixServer(path: try unixServerPath(String(value.dropFirst(5)), context: context)))
                default:
                    throw CommandLineError("\(context): unsupported monitor device (use stdio, none or unix:PATH,server=on,wait=off)")
                }

            case .S:
                config.startPaused = true

            case .incoming:
                if value == "defer" {
                    config.incoming = .deferred
                } else {
                    do {
                        config.incoming = .uri(try MigrationURI.parse(value))
                    } catch {
                        throw CommandLineError("\(context): \(error)")
                    }
                }

            case .kernel:
                guard !value.isEmpty else { throw CommandLineError("\(context): missing file name") }
                config.kernel = value
                kernelOption = context

            case .bios:
                guard !value.isEmpty else { throw CommandLineError("\(context): missing file name") }
                config.bios = value
                biosOption = context

            case .builtinGuest:
                let list = try options(value, impliedKey: nil, keys: ["fill", "mode", "disk", "ip", "dirty"], context: context)
                if let ip = list["ip"] {
                    let parts = ip.split(separator: ".", omittingEmptySubsequences: false).compactMap { UInt8($0) }
                    guard parts.count == 4, ip.split(separator: ".", omittingEmptySubsequences: false).count == 4 else {
                        throw CommandLineError("\(context): invalid ip '\(ip)' (an IPv4 address, as in 10.0.2.15)")
                    }
                    config.builtinGuest.ip = parts
                }
                if let fill = list["fill"] {
                    let range = BuiltinGuestConfig.fillPercentRange
                    guard let percent = decimal(fill), range.contains(percent) else {
                        throw CommandLineError(
                            "\(context): invalid fill '\(fill)' (use a whole percentage of guest RAM from \(range.lowerBound) to \(range.upperBound))")
                    }
                    config.builtinGuest.fillPercent = percent
                }
                if let mode = list["mode"] {
                    guard let parsed = BuiltinGuestConfig.Mode(rawValue: mode) else {
                        throw CommandLineError("\(context): invalid mode '\(mode)' (use sleep or spin)")
                    }
                    config.builtinGuest.mode = parsed
                }
                if let disk = list["disk"] {
                    guard let parsed = BuiltinGuestConfig.DiskMode(rawValue: disk) else {
                        throw CommandLineError("\(context): invalid disk '\(disk)' (use check, randread, randwrite, seqread or seqwrite)")
                    }
                    config.builtinGuest.disk = parsed
                }
                if let dirty = list["dirty"] {
                    let range = BuiltinGuestConfig.dirtyPercentRange
                    guard let percent = decimal(dirty), range.contains(percent) else {
                        throw CommandLineError(
                            "\(context): invalid dirty '\(dirty)' (use a whole percentage of guest RAM to rewrite per second, from \(range.lowerBound) to \(range.upperBound))")
                    }
                    config.builtinGuest.dirtyPercent = percent
                }
                builtinGuestOption = context

            case .device:
                try addDevice(value, context: context)

            case .logLevel:
                guard ["error", "warning", "info", "debug"].contains(value) else {
                    throw CommandLineError("\(context): unknown log level '\(value)' (use error, warning, info or debug)")
                }
                config.logLevel = value

            case .drive:
                try addDrive(value, context: context)
            case .blockdev:
                try addBlockdev(value, context: context)
            case .boot:
                try setBoot(value, context: context)
            case .netdev:
                try addNetdev(value, context: context)
            case .nic:
                try addNic(value, context: context)

            case .debugcon:
                switch value {
                case "none": config.debugcon = nil
                case "stdio": config.debugcon = .stdio
                case "null": config.debugcon = .null
                case _ where value.hasPrefix("file:") && value.count > 5: config.debugcon = .file(String(value.dropFirst(5)))
                default:
                    throw CommandLineError("\(context): unsupported debug console (use file:PATH, stdio, null or none)")
                }

            case .global:
                // QEMU's -global DRIVER.PROP=VALUE; the one property cprvmm has is the debug console's port.
                let prefix = "isa-debugcon.iobase="
                guard value.hasPrefix(prefix) else {
                    throw CommandLineError("\(context): unsupported global property (the one supported is isa-debugcon.iobase=PORT)")
                }
                let text = String(value.dropFirst(prefix.count))
                guard let port = integer(text), port <= 0xFFFF else {
                    throw CommandLineError("\(context): invalid iobase '\(text)' (use a port number from 0 to 0xffff)")
                }
                config.debugconIOBase = UInt16(port)

            case .accel:
                let list = try options(value, impliedKey: "accel", keys: ["accel"], context: context)
                guard let accel = list["accel"] else {
                    throw CommandLineError("\(context): missing accelerator (use -accel kvm)")
                }
                try checkAccelerator(accel, context: context)

            case .display:
                guard value == "none" else {
                    throw CommandLineError(
                        "\(context): unsupported display '\(value)' (only 'none' is supported: cprvmm has no display)")
                }

            case .nographic:
                nographic = true
            case .nodefaults:
                nodefaults = true
            case .enableKVM, .noUserConfig:
                break
            case .h, .help, .version:
                break  // handled by parse
            }
        }

        /// The cross-option checks, once every option is known.
        mutating func finish() throws(CommandLineError) -> MachineConfig {
            // As QEMU: -serial replaces the default serial port; -nodefaults removes it;
            // -nographic keeps it on stdio (cprvmm's default anyway, having no display).
            // A monitor on stdio takes the default serial port's place there (QEMU then
            // sends the serial port to a display cprvmm does not have): use null instead.
            if serialOption == nil {
                config.serial = nodefaults ? .none : monitorStdioOption != nil ? .null : .stdio
            }
            if let monitorStdioOption, let serialOption, config.serial == .stdio {
                throw CommandLineError("\(monitorStdioOption): stdio is already used by \(serialOption) (put one of them on a unix: socket)")
            }

            if let kernelOption, let biosOption {
                throw CommandLineError("\(kernelOption): cannot be combined with \(biosOption) (use one or the other)")
            }
            if let builtinGuestOption, let other = kernelOption ?? biosOption {
                throw CommandLineError(
                    "\(builtinGuestOption): cannot be combined with \(other) (the built-in guest runs only without -kernel and -bios)")
            }

            if let id = config.memoryBackendID, let backendReference {
                guard let backend = config.memoryBackend else {
                    throw CommandLineError("\(backendReference): no -object memory-backend-* with id=\(id)")
                }
                if let ramOption {
                    if backend.size != config.ramSize {
                        throw CommandLineError(
                            "\(backendReference): backend size \(SizeParser.describe(backend.size)) differs from \(ramOption) (\(SizeParser.describe(config.ramSize))); drop -m or make the sizes equal")
                    }
                } else {
                    config.ramSize = backend.size
                }
            }
            try checkDirtyArea()
            try bindDisks()
            try bindNICs()
            for (backend, option) in zip(config.memoryBackends, backendOptions) where backend.id != config.memoryBackendID {
                throw CommandLineError(
                    "\(option): defined but not used (cprvmm uses a memory backend only as guest RAM: add -machine memory-backend=\(backend.id))")
            }
            return config
        }

        /// dirty= needs RAM that the fill ranges leave free (BuiltinGuest.dirtyArea).
        func checkDirtyArea() throws(CommandLineError) {
            let guest = config.builtinGuest
            guard let builtinGuestOption, guest.dirtyPercent > 0 else { return }
            let ram = MachineMemory.ramRanges(size: config.ramSize)
            let fill = BuiltinGuest.fillRanges(ram: ram, totalRAM: config.ramSize, percent: guest.fillPercent)
            guard BuiltinGuest.dirtyArea(ram: ram, fill: fill) == nil else { return }
            throw CommandLineError(
                "\(builtinGuestOption): dirty=\(guest.dirtyPercent) needs \(SizeParser.describe(BuiltinGuest.minimumDirtyArea)) of RAM above 8 MiB that fill= does not cover; fill=\(guest.fillPercent) of -m \(SizeParser.describe(config.ramSize)) leaves none (lower fill= or raise -m)")
        }

        // MARK: Option helpers

        func options(_ value: String, impliedKey: String?, keys: [String], context: String) throws(CommandLineError) -> OptionList {
            do {
                return try OptionList.parse(value, impliedKey: impliedKey, keys: keys)
            } catch {
                switch error {
                case .emptyKey(let element):
                    let shown = element.isEmpty ? "an empty element" : "'\(element)'"
                    throw CommandLineError("\(context): missing parameter name in \(shown) (use key=value)")
                case .unknownKey(let key):
                    throw CommandLineError(
                        "\(context): unsupported parameter '\(key)' (supported: \(keys.joined(separator: ", ")))")
                }
            }
        }

        func boolean(_ value: String, key: String, context: String) throws(CommandLineError) -> Bool {
            switch value {
            case "on", "yes", "true": return true
            case "off", "no", "false": return false
            default: throw CommandLineError("\(context): invalid value '\(value)' for \(key) (use on or off)")
            }
        }

        func checkAccelerator(_ accel: String, context: String) throws(CommandLineError) {
            guard accel == "kvm" else {
                throw CommandLineError("\(context): unsupported accelerator '\(accel)' (only kvm is supported)")
            }
        }

        /// QEMU's rule for ids (id_wellformed): a letter, then letters, digits, '-', '.' and '_'.
        func checkID(_ id: String, context: String) throws(CommandLineError) {
            var scalars = id.unicodeScalars.makeIterator()
            guard let first = scalars.next(), isASCIILetter(first) else {
                throw CommandLineError(
                    "\(context): invalid id '\(id)' (use a letter followed by letters, digits, '-', '.' or '_')")
            }
            while let scalar = scalars.next() {
                guard isASCIILetter(scalar) || ("0"..."9").contains(scalar) || scalar == "-" || scalar == "." || scalar == "_" else {
                    throw CommandLineError(
                        "\(context): invalid id '\(id)' (use a letter followed by letters, digits, '-', '.' or '_')")
                }
            }
        }

        private func isASCIILetter(_ scalar: Unicode.Scalar) -> Bool {
            ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar)
        }

        /// A guest RAM size: `text` parsed with `defaultUnit`, a multiple of 4 KiB, 16 MiB...256 GiB.
        func ramSize(_ text: String, defaultUnit: UInt64, context: String) throws(CommandLineError) -> UInt64 {
            guard let size = SizeParser.parse(text, defaultUnit: defaultUnit) else {
                throw CommandLineError(
                    "\(context): invalid size '\(text)' (use a number with an optional K, M, G or T suffix)")
            }
            if size % MachineConfig.ramAlignment != 0 {
                throw CommandLineError(
                    "\(context): size \(SizeParser.describe(size)) is not a multiple of \(SizeParser.describe(MachineConfig.ramAlignment))")
            }
            if size < MachineConfig.minimumRAMSize {
                throw CommandLineError(
                    "\(context): size \(SizeParser.describe(size)) is below the minimum of \(SizeParser.describe(MachineConfig.minimumRAMSize))")
            }
            if size > MachineConfig.maximumRAMSize {
                throw CommandLineError(
                    "\(context): size \(SizeParser.describe(size)) exceeds the maximum of \(SizeParser.describe(MachineConfig.maximumRAMSize))")
            }
            return size
        }

        /// -smp [cpus=]N[,maxcpus=N][,sockets=S][,cores=C][,threads=T], with QEMU's rules for
        /// omitted values (hw/core/machine-smp.c, preferring cores as QEMU >= 6.2 does); then
        /// maxcpus must equal cpus and sockets * cores * threads must equal cpus.
        func cpuCount(_ value: String, context: String) throws(CommandLineError) -> Int {
            let keys = ["cpus", "maxcpus", "sockets", "cores", "threads"]
            let list = try options(value, impliedKey: "cpus", keys: keys, context: context)
            var given: [String: Int] = [:]
            for key in keys {
                guard let text = list[key] else { continue }
                guard let number = decimal(text), (1...MachineConfig.maximumCPUs).contains(number) else {
                    throw CommandLineError(
                        "\(context): invalid \(key) '\(text)' (use a whole number from 1 to \(MachineConfig.maximumCPUs))")
                }
                given[key] = number
            }
            var cpus = given["cpus"] ?? 0
            var maxcpus = given["maxcpus"] ?? 0
            var sockets = given["sockets"] ?? 0
            var cores = given["cores"] ?? 0
            var threads = given["threads"] ?? 0
            if cpus != 0, maxcpus != 0, maxcpus != cpus {
                throw CommandLineError(
                    "\(context): maxcpus=\(maxcpus) differs from cpus=\(cpus) (CPU hotplug is not supported: drop maxcpus or make it equal)")
            }
            if cpus == 0 && maxcpus == 0 {
                sockets = max(sockets, 1)
                cores = max(cores, 1)
                threads = max(threads, 1)
            } else {
                maxcpus = maxcpus != 0 ? maxcpus : cpus
                if cores == 0 {
                    sockets = max(sockets, 1)
                    threads = max(threads, 1)
                    cores = maxcpus / (sockets * threads)
                } else if sockets == 0 {
                    threads = max(threads, 1)
                    sockets = maxcpus / (cores * threads)
                }
                if threads == 0 {
                    threads = maxcpus / (sockets * cores)
                }
            }
            let total = sockets * cores * threads
            maxcpus = maxcpus != 0 ? maxcpus : total
            cpus = cpus != 0 ? cpus : maxcpus
            if total != cpus {
                throw CommandLineError(
                    "\(context): sockets*cores*threads = \(sockets)*\(cores)*\(threads) = \(total) does not match cpus=\(cpus)")
            }
            if cpus > MachineConfig.maximumCPUs {
                throw CommandLineError("\(context): \(cpus) CPUs requested, at most \(MachineConfig.maximumCPUs) are supported")
            }
            return cpus
        }

        mutating func addMemoryBackend(_ value: String, context: String) throws(CommandLineError) {
            let keys = ["qom-type", "id", "size", "share", "mem-path", "prealloc"]
            // The type first, so that any other object type is refused as such.
            guard let loose = try? OptionList.parse(value, impliedKey: "qom-type", keys: nil) else {
                _ = try options(value, impliedKey: "qom-type", keys: keys, context: context)  // throws the reason
                throw CommandLineError("\(context): invalid parameters")
            }
            guard let type = loose["qom-type"], !type.isEmpty else {
                throw CommandLineError("\(context): missing object type")
            }
            guard let kind = MemoryBackendConfig.Kind(rawValue: type) else {
                let supported = MemoryBackendConfig.Kind.allCases.map(\.rawValue).joined(separator: ", ")
                throw CommandLineError("-object \(type): unsupported object type (supported: \(supported))")
            }
            let list = try options(value, impliedKey: "qom-type", keys: keys, context: context)
            guard let id = list["id"] else {
                throw CommandLineError("\(context): id is required")
            }
            try checkID(id, context: context)
            if config.memoryBackends.contains(where: { $0.id == id }) {
                throw CommandLineError("\(context): id '\(id)' is already used by another -object")
            }
            guard let sizeText = list["size"] else {
                throw CommandLineError("\(context): size is required")
            }
            let size = try ramSize(sizeText, defaultUnit: 1, context: context)
            var backend = MemoryBackendConfig(kind: kind, id: id, size: size)
            if let share = list["share"] {
                backend.share = try boolean(share, key: "share", context: context)
            }
            if let prealloc = list["prealloc"] {
                backend.prealloc = try boolean(prealloc, key: "prealloc", context: context)
            }
            switch (kind, list["mem-path"]) {
            case (.file, let path?) where !path.isEmpty:
                backend.memPath = path
            case (.file, _):
                throw CommandLineError("\(context): mem-path is required")
            case (_, _?):
                throw CommandLineError("\(context): mem-path is only valid for memory-backend-file")
            case (_, nil):
                break
            }
            config.memoryBackends.append(backend)
            backendOptions.append(context)
        }

        /// QEMU's legacy -serial syntax (chardev/char.c, qemu_chr_parse_compat), the forms cprvmm has.
        /// `-device isa-debug-exit[,iobase=N][,iosize=N][,id=ID]`, QEMU's defaults 0x501 and 2.
        mutating func addDevice(_ value: String, context: String) throws(CommandLineError) {
            // The driver first: another device's properties are not worth naming.
            let driver = value.split(separator: ",", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            guard !driver.isEmpty, !driver.contains("=") else { throw CommandLineError("\(context): missing device driver (as in -device isa-debug-exit)") }
            if driver == "virtio-blk-pci" { return try addVirtioBlockDevice(value, context: context) }
            if driver == "virtio-net-pci" { return try addVirtioNetDevice(value, context: context) }
            guard driver == "isa-debug-exit" else {
                throw CommandLineError("\(context): device '\(driver)' is not supported by this cprvmm version (the devices are virtio-blk-pci, virtio-net-pci and isa-debug-exit)")
            }
            let list = try options(value, impliedKey: "driver", keys: ["driver", "iobase", "iosize", "id"], context: context)
            if let debugExitOption {
                throw CommandLineError("\(context): only one isa-debug-exit is supported (already given: \(debugExitOption))")
            }
            var device = DebugExitConfig()
            if let text = list["iobase"] {
                guard let base = integer(text), base <= 0xFFFF else {
                    throw CommandLineError("\(context): invalid iobase '\(text)' (use a port number from 0 to 0xffff)")
                }
                device.ioBase = UInt16(base)
            }
            if let text = list["iosize"] {
                guard let size = integer(text), (1...4).contains(size) else {
                    throw CommandLineError("\(context): invalid iosize '\(text)' (use 1 to 4 ports)")
                }
                device.ioSize = UInt16(size)
            }
            guard Int(device.ioBase) + Int(device.ioSize) <= 0x10000 else {
                throw CommandLineError("\(context): ports 0x\(String(device.ioBase, radix: 16)) + \(device.ioSize) run past 0xffff")
            }
            config.debugExit = device
            debugExitOption = context
        }

        /// A decimal, 0x hexadecimal or 0 octal integer, as QEMU's qdev integer properties.
        func integer(_ text: String) -> UInt64? {
            if text.hasPrefix("0x") || text.hasPrefix("0X") { return UInt64(text.dropFirst(2), radix: 16) }
            if text.count > 1, text.hasPrefix("0") { return UInt64(text.dropFirst(), radix: 8) }
            return UInt64(text)
        }

        func serialConfig(_ value: String, context: String) throws(CommandLineError) -> SerialConfig {
            switch value {
            case "stdio": return .stdio
            case "null": return .null
            case "none": return .none
            default: break
            }
            if value.hasPrefix("file:") {
                let path = String(value.dropFirst(5))
                guard !path.isEmpty else { throw CommandLineError("\(context): missing file name after 'file:'") }
                return .file(path: path)
            }
            if value.hasPrefix("unix:") {
                return .unixServer(path: try unixServerPath(String(value.dropFirst(5)), context: context))
            }
            let backend = value.prefix { $0 != ":" && $0 != "," }
            throw CommandLineError(
                "\(context): unsupported serial backend '\(backend)' (use stdio, null, none, file:PATH or unix:PATH,server=on,wait=off)")
        }

        /// QEMU's "unix:PATH[,server=on|off][,wait=on|off]" socket syntax, as a listening socket
        /// that never blocks start-up: server=on,wait=off is required.
        func unixServerPath(_ value: String, context: String) throws(CommandLineError) -> String {
            let list = try options(value, impliedKey: "path", keys: ["path", "server", "wait"], context: context)
            guard let path = list["path"], !path.isEmpty else {
                throw CommandLineError("\(context): missing socket path after 'unix:'")
            }
            // sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
            if path.utf8.count > 107 {
                throw CommandLineError("\(context): socket path is longer than 107 bytes")
            }
            var server = false  // QEMU's defaults: connect as a client...
            var wait = true  // ...and, as a server, wait for a client
            if let text = list["server"] { server = try boolean(text, key: "server", context: context) }
            if let text = list["wait"] { wait = try boolean(text, key: "wait", context: context) }
            if !server {
                throw CommandLineError(
                    "\(context): server=on,wait=off is required (cprvmm listens on the socket and never blocks start-up waiting for a client)")
            }
            if wait {
                throw CommandLineError(
                    "\(context): wait=off is required (cprvmm never blocks start-up waiting for a client)")
            }
            return path
        }

        /// A non-negative decimal number without sign, or nil.
        func decimal(_ text: String) -> Int? {
            guard !text.isEmpty, text.utf8.count <= 9, text.utf8.allSatisfy({ (48...57).contains($0) }) else {
                return nil
            }
            return Int(text)
        }
    }
}
