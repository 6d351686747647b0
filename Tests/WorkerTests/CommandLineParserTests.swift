import Glibc
import Testing
@testable import Worker

private let MiB: UInt64 = 1 << 20
private let GiB: UInt64 = 1 << 30

/// The words of `line`, split at spaces (no test argument contains one).
private func words(_ line: String) -> [String] {
    line.split(separator: " ").map(String.init)
}

/// The configuration that `line` runs; records an issue when it is not a `.run`.
private func config(_ line: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> MachineConfig {
    try config(words(line), sourceLocation: sourceLocation)
}

private func config(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> MachineConfig {
    let action = try CommandLineParser.parse(arguments)
    guard case .run(let config) = action else {
        Issue.record("expected .run, got \(action)", sourceLocation: sourceLocation)
        return MachineConfig()
    }
    return config
}

/// The error message for `arguments`, or nil when they parse.
private func failure(_ arguments: [String]) -> String? {
    do {
        _ = try CommandLineParser.parse(arguments)
        return nil
    } catch {
        return error.message
    }
}

private func failure(_ line: String) -> String? {
    failure(words(line))
}

// MARK: - Defaults, help, version, option spelling

@Suite struct CommandLineBasicsTests {
    @Test func noArgumentsGiveTheDefaults() throws {
        let parsed = try config([])
        #expect(parsed == MachineConfig())
        #expect(parsed.name == nil)
        #expect(parsed.ramSize == 128 * MiB)
        #expect(parsed.smp == 1)
        #expect(parsed.memfdAlloc == false)
        #expect(parsed.memoryBackendID == nil)
        #expect(parsed.memoryBackends.isEmpty)
        #expect(parsed.memoryBackend == nil)
        #expect(parsed.serial == .stdio)
        #expect(parsed.kernel == nil)
        #expect(parsed.bios == nil)
        #expect(parsed.builtinGuest == BuiltinGuestConfig(fillPercent: 25, mode: .sleep))
        #expect(parsed.usesBuiltinGuest)
    }

    @Test(arguments: ["-h", "-help", "--help", "--h"])
    func help(option: String) throws {
        #expect(try CommandLineParser.parse([option]) == .help)
    }

    @Test(arguments: ["-version", "--version"])
    func version(option: String) throws {
        #expect(try CommandLineParser.parse([option]) == .version)
    }

    @Test func helpAndVersionReturnAtOnceButEarlierErrorsComeFirst() throws {
        #expect(try CommandLineParser.parse(words("-m 1G -help -foo")) == .help)
        #expect(try CommandLineParser.parse(words("-version -help")) == .version)
        #expect(failure("-foo -help") == "-foo: unknown option (see cprvmm --help)")
        #expect(failure("-m 12Q --version") == "-m 12Q: invalid size '12Q' (use a number with an optional K, M, G or T suffix)")
    }

    @Test func doubleDashIsAnAliasOfSingleDash() throws {
        let parsed = try config("--m 1G --smp 2 --name vm --nodefaults --machine pc")
        #expect(parsed.ramSize == GiB)
        #expect(parsed.smp == 2)
        #expect(parsed.name == "vm")
        #expect(parsed.serial == .none)
    }

    @Test func unknownOptions() {
        #expect(failure("-foo") == "-foo: unknown option (see cprvmm --help)")
        #expect(failure("--foo") == "-foo: unknown option (see cprvmm --help)")
        #expect(failure("---m 1G") == "--m: unknown option (see cprvmm --help)")
        #expect(failure("-") == "-: unknown option (see cprvmm --help)")
        #expect(failure("--") == "--: unknown option (see cprvmm --help)")
        #expect(failure("-M512") == "-M512: unknown option (see cprvmm --help)")
        #expect(failure("-m=512") == "-m=512: unknown option (write the argument as the next word: -m 512)")
        #expect(failure("--serial=stdio") == "-serial=stdio: unknown option (write the argument as the next word: -serial stdio)")
    }

    @Test(arguments: [
        "-chardev", "-mon", "-daemonize", "-cdrom", "-net", "-cpu", "-append", "-initrd", "-d", "-D", "-hda", "-vnc", "-vga", "-numa", "-mem-path",
    ])
    func unsupportedQEMUOptionsAreRefused(option: String) {
        #expect(failure([option, "x"]) == "\(option): not supported by this cprvmm version")
        #expect(failure(["-" + option, "x"]) == "\(option): not supported by this cprvmm version")
    }

    @Test func debugExitDevice() throws {
        #expect(try config("-m 16").debugExit == nil, "isa-debug-exit is opt-in, as in QEMU")
        #expect(try config("-device isa-debug-exit").debugExit == DebugExitConfig())
        let moved = try #require(try config("-device isa-debug-exit,iobase=0xf4,iosize=0x04,id=dbg").debugExit)
        #expect(moved.ioBase == 0xF4 && moved.ioSize == 4)
        #expect(failure("-device e1000,netdev=n0") == "-device e1000,netdev=n0: device 'e1000' is not supported by this cprvmm version (the devices are virtio-blk-pci, virtio-net-pci and isa-debug-exit)")
        #expect(failure("-device iobase=1") == "-device iobase=1: missing device driver (as in -device isa-debug-exit)")
        #expect(failure("-device isa-debug-exit,iobase=0x10000") == "-device isa-debug-exit,iobase=0x10000: invalid iobase '0x10000' (use a port number from 0 to 0xffff)")
        #expect(failure("-device isa-debug-exit,iosize=0") == "-device isa-debug-exit,iosize=0: invalid iosize '0' (use 1 to 4 ports)")
        #expect(failure("-device isa-debug-exit,iobase=0xffff,iosize=2") == "-device isa-debug-exit,iobase=0xffff,iosize=2: ports 0xffff + 2 run past 0xffff")
        #expect(failure("-device isa-debug-exit,irq=3") == "-device isa-debug-exit,irq=3: unsupported parameter 'irq' (supported: driver, iobase, iosize, id)")
        #expect(failure("-device isa-debug-exit -device isa-debug-exit,iobase=0x600") == "-device isa-debug-exit,iobase=0x600: only one isa-debug-exit is supported (already given: -device isa-debug-exit)")
    }

    @Test func unsupportedOptionIsRefusedEvenLastAndWithoutItsArgument() {
        #expect(failure("-m 1G -chardev") == "-chardev: not supported by this cprvmm version")
        #expect(failure("-chardev socket,id=c0,path=/x") == "-chardev: not supported by this cprvmm version")
    }

    @Test func monitors() throws {
        let parsedConfig = try config("-qmp unix:/run/q.sock,server=on,wait=off -qmp unix:/run/q2.sock,server,nowait -monitor unix:/run/h.sock,server=on,wait=off -S")
        #expect(parsedConfig.qmpSockets == ["/run/q.sock", "/run/q2.sock"])
        #expect(parsedConfig.monitors == [.unixServer(path: "/run/h.sock")])
        #expect(parsedConfig.startPaused)
        #expect(parsedConfig.serial == .stdio)
        let stdio = try config("-monitor stdio")
        #expect(stdio.monitors == [.stdio])
        #expect(stdio.serial == .null, "a monitor on stdio moves the default serial port off stdio")
        #expect(try config("-monitor stdio -serial file:/x").serial == .file(path: "/x"))
        #expect(try config("-monitor none").monitors.isEmpty)
        #expect(failure("-qmp tcp:localhost:4444") == "-qmp tcp:localhost:4444: unsupported QMP transport (use unix:PATH,server=on,wait=off)")
        #expect(failure("-qmp unix:/q.sock") == "-qmp unix:/q.sock: server=on,wait=off is required (cprvmm listens on the socket and never blocks start-up waiting for a client)")
        #expect(try config("-incoming defer").incoming == .deferred)
        #expect(try config("-incoming file:/x.state,offset=4096").incoming == .uri(.file(path: "/x.state", offset: 4096)))
        #expect(failure("-incoming ftp:x")?.hasPrefix("-incoming ftp:x: invalid migration URI 'ftp:x'") == true)
        #expect(failure("-monitor vc") == "-monitor vc: unsupported monitor device (use stdio, none or unix:PATH,server=on,wait=off)")
        #expect(failure("-serial stdio -monitor stdio") == "-monitor stdio: stdio is already used by -serial stdio (put one of them on a unix: socket)")
    }

    @Test func positionalArgumentsAreRefused() {
        #expect(failure("disk.img") == "disk.img: positional arguments (disk images) are not supported by this cprvmm version")
        #expect(failure("-m 1G disk.img") == "disk.img: positional arguments (disk images) are not supported by this cprvmm version")
        #expect(failure([""]) == "'': positional arguments (disk images) are not supported by this cprvmm version")
    }

    @Test(arguments: [
        "-name", "-m", "-smp", "-machine", "-M", "-object", "-serial", "-kernel", "-bios", "-accel",
        "-display", "-builtin-guest",
    ])
    func missingArgumentAtTheEnd(option: String) {
        #expect(failure([option]) == "\(option): missing argument")
        #expect(failure(["-enable-kvm", option]) == "\(option): missing argument")
        #expect(failure(["-" + option]) == "\(option): missing argument")
    }

    @Test func optionArgumentMayStartWithADash() {
        #expect(failure("-m -smp") == "-m -smp: invalid size '-smp' (use a number with an optional K, M, G or T suffix)")
    }

    @Test func flagsThatChangeNothing() throws {
        #expect(try config("-enable-kvm -no-user-config -accel kvm -display none") == MachineConfig())
        #expect(try config("-accel accel=kvm -M accel=kvm") == MachineConfig())
    }

    @Test func aTypicalQEMUStyleCommandLine() throws {
        let line = "-name guest=vm1 -machine pc,accel=kvm,memory-backend=ram0 -smp 2 -m 1G -nodefaults"
            + " -object memory-backend-memfd,id=ram0,size=1G -serial unix:/run/vm1.sock,server=on,wait=off"
            + " -display none -no-user-config -builtin-guest fill=10,mode=spin"
        var expected = MachineConfig()
        expected.name = "vm1"
        expected.ramSize = GiB
        expected.smp = 2
        expected.memoryBackendID = "ram0"
        expected.memoryBackends = [MemoryBackendConfig(kind: .memfd, id: "ram0", size: GiB, share: true)]
        expected.serial = .unixServer(path: "/run/vm1.sock")
        expected.builtinGuest = BuiltinGuestConfig(fillPercent: 10, mode: .spin)
        #expect(try config(line) == expected)
    }
}

// MARK: - -name

@Suite struct NameOptionTests {
    @Test func names() throws {
        #expect(try config("-name vm1").name == "vm1")
        #expect(try config("-name guest=vm1").name == "vm1")
        #expect(try config(["-name", "a,,b"]).name == "a,b")
        #expect(try config("-name one -name two").name == "two")
    }

    @Test func badNames() {
        #expect(failure(["-name", ""]) == "-name '': missing guest name")
        #expect(failure("-name guest=") == "-name guest=: missing guest name")
        #expect(failure("-name vm1,process=qemu") == "-name vm1,process=qemu: unsupported parameter 'process' (supported: guest)")
        #expect(failure("-name vm1,debug-threads=on") == "-name vm1,debug-threads=on: unsupported parameter 'debug-threads' (supported: guest)")
    }
}

// MARK: - -m

@Suite struct MemoryOptionTests {
    @Test(arguments: [
        ("512", 512 * MiB),
        ("1G", GiB),
        ("1.5G", 3 * GiB / 2),
        ("size=2G", 2 * GiB),
        ("16", 16 * MiB),
        ("16M", 16 * MiB),
        ("256G", 256 << 30),
        ("20484K", 20484 << 10),
        ("0x20", 32 * MiB),
        ("1g", GiB),
    ] as [(String, UInt64)])
    func sizes(argument: String, expected: UInt64) throws {
        #expect(try config(["-m", argument]).ramSize == expected)
    }

    @Test func laterMWins() throws {
        #expect(try config("-m 1G -m size=2G").ramSize == 2 * GiB)
    }

    @Test func badSizes() {
        #expect(failure("-m 12Q") == "-m 12Q: invalid size '12Q' (use a number with an optional K, M, G or T suffix)")
        #expect(failure(["-m", ""]) == "-m '': missing size")
        #expect(failure("-m size=") == "-m size=: invalid size '' (use a number with an optional K, M, G or T suffix)")
        #expect(failure("-m 1.5.5G") == "-m 1.5.5G: invalid size '1.5.5G' (use a number with an optional K, M, G or T suffix)")
        #expect(failure("-m -1") == "-m -1: invalid size '-1' (use a number with an optional K, M, G or T suffix)")
        #expect(failure("-m 99999999999999999999") == "-m 99999999999999999999: invalid size '99999999999999999999' (use a number with an optional K, M, G or T suffix)")
        #expect(failure("-m 17592186044416") == "-m 17592186044416: invalid size '17592186044416' (use a number with an optional K, M, G or T suffix)")
    }

    @Test func sizeLimits() {
        #expect(failure("-m 0") == "-m 0: size 0 bytes is below the minimum of 16 MiB")
        #expect(failure("-m 3K") == "-m 3K: size 3 KiB is not a multiple of 4 KiB")
        #expect(failure("-m 16390K") == "-m 16390K: size 16390 KiB is not a multiple of 4 KiB")
        #expect(failure("-m 1.0001G") == "-m 1.0001G: size 1073849198 bytes is not a multiple of 4 KiB")
        #expect(failure("-m 8") == "-m 8: size 8 MiB is below the minimum of 16 MiB")
        #expect(failure("-m 16380K") == "-m 16380K: size 16380 KiB is below the minimum of 16 MiB")
        #expect(failure("-m 2T") == "-m 2T: size 2 TiB exceeds the maximum of 256 GiB")
        #expect(failure("-m 262145") == "-m 262145: size 262145 MiB exceeds the maximum of 256 GiB")
    }

    @Test func hotplugParametersAreRefused() {
        #expect(failure("-m 1G,maxmem=4G") == "-m 1G,maxmem=4G: unsupported parameter 'maxmem' (supported: size)")
        #expect(failure("-m 1G,slots=2") == "-m 1G,slots=2: unsupported parameter 'slots' (supported: size)")
    }
}

// MARK: - -smp

@Suite struct SMPOptionTests {
    @Test(arguments: [
        ("2", 2),
        ("cpus=2", 2),
        ("255", 255),
        ("sockets=1,cores=2,threads=1", 2),
        ("sockets=2,cores=2,threads=2", 8),
        ("4,cores=2", 4),  // sockets computed: 2
        ("8,sockets=2", 8),  // cores computed: 4
        ("8,sockets=2,cores=2", 8),  // threads computed: 2
        ("4,threads=2", 4),  // cores computed: 2
        ("maxcpus=4", 4),
        ("cpus=4,maxcpus=4", 4),
        ("cores=4", 4),
    ] as [(String, Int)])
    func counts(argument: String, expected: Int) throws {
        #expect(try config(["-smp", argument]).smp == expected)
    }

    @Test func laterSMPReplacesTheEarlierOne() throws {
        #expect(try config("-smp 4,cores=2 -smp 3").smp == 3)
    }

    @Test func hotplugIsRefused() {
        #expect(failure("-smp cpus=2,maxcpus=4") == "-smp cpus=2,maxcpus=4: maxcpus=4 differs from cpus=2 (CPU hotplug is not supported: drop maxcpus or make it equal)")
        #expect(failure("-smp 4,maxcpus=2") == "-smp 4,maxcpus=2: maxcpus=2 differs from cpus=4 (CPU hotplug is not supported: drop maxcpus or make it equal)")
    }

    @Test func topologyMustMatch() {
        #expect(failure("-smp 4,sockets=1,cores=2,threads=1") == "-smp 4,sockets=1,cores=2,threads=1: sockets*cores*threads = 1*2*1 = 2 does not match cpus=4")
        #expect(failure("-smp 3,cores=2") == "-smp 3,cores=2: sockets*cores*threads = 1*2*1 = 2 does not match cpus=3")
        #expect(failure("-smp 2,sockets=4") == "-smp 2,sockets=4: sockets*cores*threads = 4*0*1 = 0 does not match cpus=2")
        #expect(failure("-smp sockets=255,cores=2") == "-smp sockets=255,cores=2: 510 CPUs requested, at most 255 are supported")
    }

    @Test func badCounts() {
        #expect(failure("-smp 0") == "-smp 0: invalid cpus '0' (use a whole number from 1 to 255)")
        #expect(failure("-smp 256") == "-smp 256: invalid cpus '256' (use a whole number from 1 to 255)")
        #expect(failure("-smp two") == "-smp two: invalid cpus 'two' (use a whole number from 1 to 255)")
        #expect(failure("-smp -2") == "-smp -2: invalid cpus '-2' (use a whole number from 1 to 255)")
        #expect(failure("-smp +2") == "-smp +2: invalid cpus '+2' (use a whole number from 1 to 255)")
        #expect(failure("-smp 2,cores=0") == "-smp 2,cores=0: invalid cores '0' (use a whole number from 1 to 255)")
        #expect(failure("-smp 99999999999999999999") == "-smp 99999999999999999999: invalid cpus '99999999999999999999' (use a whole number from 1 to 255)")
        #expect(failure("-smp 2,dies=1") == "-smp 2,dies=1: unsupported parameter 'dies' (supported: cpus, maxcpus, sockets, cores, threads)")
        #expect(failure("-smp") == "-smp: missing argument")
    }
}

// MARK: - -machine, -accel, -display

@Suite struct MachineOptionTests {
    @Test(arguments: ["-machine pc", "-M pc", "-machine type=pc", "-machine pc,accel=kvm", "-M accel=kvm", "--machine pc"])
    func acceptedMachines(line: String) throws {
        #expect(try config(line) == MachineConfig())
    }

    @Test func machineTypes() {
        #expect(failure("-machine q35") == "-machine q35: unsupported machine type 'q35' (only 'pc' is supported)")
        #expect(failure("-M pc-i440fx-8.2") == "-M pc-i440fx-8.2: unsupported machine type 'pc-i440fx-8.2' (only 'pc' is supported)")
        #expect(failure("-machine type=microvm") == "-machine type=microvm: unsupported machine type 'microvm' (only 'pc' is supported)")
        #expect(failure("-machine help") == "-machine help: unsupported machine type 'help' (only 'pc' is supported)")
    }

    @Test func tscMismatchIsOptIn() throws {
        #expect(try config("-m 16").allowTSCMismatch == false)
        #expect(try config("-machine x-allow-tsc-mismatch=on").allowTSCMismatch)
    }

    @Test func otherMachinePropertiesAreRefused() {
        #expect(failure("-machine pc,hpet=off") == "-machine pc,hpet=off: unsupported parameter 'hpet' (supported: type, accel, memfd-alloc, memory-backend, x-allow-tsc-mismatch)")
        #expect(failure("-M pc,smm") == "-M pc,smm: unsupported parameter 'smm' (supported: type, accel, memfd-alloc, memory-backend, x-allow-tsc-mismatch)")
        #expect(failure("-machine pc,=on") == "-machine pc,=on: missing parameter name in '=on' (use key=value)")
    }

    @Test(arguments: [
        ("memfd-alloc=on", true), ("memfd-alloc=off", false), ("memfd-alloc=yes", true), ("memfd-alloc=no", false),
        ("memfd-alloc=true", true), ("memfd-alloc=false", false), ("pc,memfd-alloc", true), ("pc,nomemfd-alloc", false),
        ("pc,memfd-alloc=on,memfd-alloc=off", false),
    ] as [(String, Bool)])
    func memfdAlloc(argument: String, expected: Bool) throws {
        #expect(try config(["-machine", argument]).memfdAlloc == expected)
    }

    @Test func memfdAllocBadValue() {
        #expect(failure("-machine memfd-alloc=maybe") == "-machine memfd-alloc=maybe: invalid value 'maybe' for memfd-alloc (use on or off)")
        #expect(failure("-machine memfd-alloc=ON") == "-machine memfd-alloc=ON: invalid value 'ON' for memfd-alloc (use on or off)")
    }

    @Test func repeatedMachineOptionsMerge() throws {
        let parsed = try config("-M pc -machine memfd-alloc=on -machine accel=kvm")
        #expect(parsed.memfdAlloc)
        #expect(try config("-machine memfd-alloc=on -machine memfd-alloc=off").memfdAlloc == false)
    }

    @Test func accelerators() {
        #expect(failure("-accel tcg") == "-accel tcg: unsupported accelerator 'tcg' (only kvm is supported)")
        #expect(failure("-accel hvf") == "-accel hvf: unsupported accelerator 'hvf' (only kvm is supported)")
        #expect(failure("-machine accel=tcg") == "-machine accel=tcg: unsupported accelerator 'tcg' (only kvm is supported)")
        #expect(failure("-machine accel=kvm:tcg") == "-machine accel=kvm:tcg: unsupported accelerator 'kvm:tcg' (only kvm is supported)")
        #expect(failure("-accel kvm,kernel-irqchip=on") == "-accel kvm,kernel-irqchip=on: unsupported parameter 'kernel-irqchip' (supported: accel)")
        #expect(failure(["-accel", ""]) == "-accel '': missing accelerator (use -accel kvm)")
    }

    @Test func displays() throws {
        #expect(try config("-display none").serial == .stdio)
        #expect(failure("-display gtk") == "-display gtk: unsupported display 'gtk' (only 'none' is supported: cprvmm has no display)")
        #expect(failure("-display sdl,gl=on") == "-display sdl,gl=on: unsupported display 'sdl,gl=on' (only 'none' is supported: cprvmm has no display)")
        #expect(failure("-display none,foo=bar") == "-display none,foo=bar: unsupported display 'none,foo=bar' (only 'none' is supported: cprvmm has no display)")
    }
}

// MARK: - -object memory-backend-* and -machine memory-backend=

@Suite struct MemoryBackendTests {
    @Test(arguments: [
        ("memory-backend-memfd", MemoryBackendConfig.Kind.memfd, true, nil as String?),
        ("memory-backend-file", .file, false, "/dev/shm/vm1"),
        ("memory-backend-ram", .ram, false, nil),
    ])
    func kindsAndShareDefaults(type: String, kind: MemoryBackendConfig.Kind, share: Bool, memPath: String?) throws {
        let object = "\(type),id=mem,size=1G" + (memPath.map { ",mem-path=\($0)" } ?? "")
        let parsed = try config(["-object", object, "-machine", "memory-backend=mem"])
        #expect(parsed.memoryBackends == [
            MemoryBackendConfig(kind: kind, id: "mem", size: GiB, share: share, memPath: memPath, prealloc: false)
        ])
        #expect(parsed.memoryBackends[0].share == share)
        #expect(kind.defaultShare == share)
        #expect(parsed.memoryBackendID == "mem")
        #expect(parsed.memoryBackend?.id == "mem")
        #expect(parsed.ramSize == GiB)
    }

    @Test func explicitShareAndPrealloc() throws {
        let memfd = try config("-object memory-backend-memfd,id=m,size=1G,share=off,prealloc=on -M memory-backend=m")
        #expect(memfd.memoryBackends == [MemoryBackendConfig(kind: .memfd, id: "m", size: GiB, share: false, prealloc: true)])
        let file = try config("-object memory-backend-file,id=m,size=1G,mem-path=/x,share=on -M memory-backend=m")
        #expect(file.memoryBackends == [MemoryBackendConfig(kind: .file, id: "m", size: GiB, share: true, memPath: "/x")])
        let ram = try config("-object memory-backend-ram,id=m,size=1G,share=yes,prealloc=false -M memory-backend=m")
        #expect(ram.memoryBackends == [MemoryBackendConfig(kind: .ram, id: "m", size: GiB, share: true)])
        let flags = try config("-object memory-backend-memfd,id=m,size=1G,noshare,prealloc -M memory-backend=m")
        #expect(flags.memoryBackends == [MemoryBackendConfig(kind: .memfd, id: "m", size: GiB, share: false, prealloc: true)])
    }

    @Test func qomTypeKeyAndEscapedCommaInMemPath() throws {
        let parsed = try config([
            "-object", "qom-type=memory-backend-file,id=m,size=1073741824,mem-path=/dev/shm/a,,b", "-M", "memory-backend=m",
        ])
        #expect(parsed.memoryBackends == [MemoryBackendConfig(kind: .file, id: "m", size: GiB, memPath: "/dev/shm/a,b")])
    }

    @Test func backendAndMachineOptionsInEitherOrder() throws {
        let before = try config("-machine memory-backend=m0 -object memory-backend-ram,id=m0,size=256M")
        let after = try config("-object memory-backend-ram,id=m0,size=256M -machine memory-backend=m0")
        #expect(before == after)
        #expect(before.ramSize == 256 * MiB)
    }

    @Test func memfdAllocWithMemoryBackend() throws {
        let parsed = try config("-machine memfd-alloc=on,memory-backend=x -object memory-backend-memfd,id=x,size=2G")
        #expect(parsed.memfdAlloc)
        #expect(parsed.memoryBackendID == "x")
        #expect(parsed.ramSize == 2 * GiB)
        let file = try config("-machine pc,memory-backend=x,memfd-alloc=off -object memory-backend-file,id=x,size=2G,mem-path=/x")
        #expect(!file.memfdAlloc)
        #expect(file.memoryBackend?.kind == .file)
    }

    @Test func memorySizeMustMatchTheBackend() throws {
        #expect(try config("-m 1G -machine memory-backend=m0 -object memory-backend-ram,id=m0,size=1G").ramSize == GiB)
        #expect(failure("-m 512 -machine memory-backend=m0 -object memory-backend-ram,id=m0,size=1G") == "-machine memory-backend=m0: backend size 1 GiB differs from -m 512 (512 MiB); drop -m or make the sizes equal")
        #expect(failure("-object memory-backend-ram,id=m0,size=1G -M memory-backend=m0 -m size=1.5G") == "-M memory-backend=m0: backend size 1 GiB differs from -m size=1.5G (1536 MiB); drop -m or make the sizes equal")
    }

    @Test func missingBackend() {
        #expect(failure("-machine memory-backend=ram0") == "-machine memory-backend=ram0: no -object memory-backend-* with id=ram0")
        #expect(failure("-machine memory-backend=ram0 -object memory-backend-ram,id=ram1,size=1G") == "-machine memory-backend=ram0: no -object memory-backend-* with id=ram0")
        #expect(failure("-machine memory-backend=") == "-machine memory-backend=: invalid id '' (use a letter followed by letters, digits, '-', '.' or '_')")
    }

    @Test func unusedBackends() {
        #expect(failure("-object memory-backend-ram,id=m1,size=1G") == "-object memory-backend-ram,id=m1,size=1G: defined but not used (cprvmm uses a memory backend only as guest RAM: add -machine memory-backend=m1)")
        #expect(failure("-object memory-backend-ram,id=m0,size=1G -object memory-backend-memfd,id=m1,size=1G -M memory-backend=m0") == "-object memory-backend-memfd,id=m1,size=1G: defined but not used (cprvmm uses a memory backend only as guest RAM: add -machine memory-backend=m1)")
    }

    @Test func duplicateIDs() {
        #expect(failure("-object memory-backend-ram,id=m0,size=1G -object memory-backend-memfd,id=m0,size=1G") == "-object memory-backend-memfd,id=m0,size=1G: id 'm0' is already used by another -object")
    }

    @Test func fileWithoutMemPath() {
        #expect(failure("-object memory-backend-file,id=m0,size=1G") == "-object memory-backend-file,id=m0,size=1G: mem-path is required")
        #expect(failure("-object memory-backend-file,id=m0,size=1G,mem-path=") == "-object memory-backend-file,id=m0,size=1G,mem-path=: mem-path is required")
    }

    @Test func memPathOnlyForFile() {
        #expect(failure("-object memory-backend-memfd,id=m0,size=1G,mem-path=/x") == "-object memory-backend-memfd,id=m0,size=1G,mem-path=/x: mem-path is only valid for memory-backend-file")
        #expect(failure("-object memory-backend-ram,id=m0,size=1G,mem-path=/x") == "-object memory-backend-ram,id=m0,size=1G,mem-path=/x: mem-path is only valid for memory-backend-file")
    }

    @Test func missingOrBadProperties() {
        #expect(failure("-object memory-backend-ram,size=1G") == "-object memory-backend-ram,size=1G: id is required")
        #expect(failure("-object memory-backend-ram,id=m0") == "-object memory-backend-ram,id=m0: size is required")
        #expect(failure("-object memory-backend-ram,id=0m,size=1G") == "-object memory-backend-ram,id=0m,size=1G: invalid id '0m' (use a letter followed by letters, digits, '-', '.' or '_')")
        #expect(failure("-object memory-backend-ram,id=m/0,size=1G") == "-object memory-backend-ram,id=m/0,size=1G: invalid id 'm/0' (use a letter followed by letters, digits, '-', '.' or '_')")
        #expect(failure("-object memory-backend-ram,id=m0,size=1X") == "-object memory-backend-ram,id=m0,size=1X: invalid size '1X' (use a number with an optional K, M, G or T suffix)")
        #expect(failure("-object memory-backend-ram,id=m0,size=1000") == "-object memory-backend-ram,id=m0,size=1000: size 1000 bytes is not a multiple of 4 KiB")
        #expect(failure("-object memory-backend-ram,id=m0,size=1024") == "-object memory-backend-ram,id=m0,size=1024: size 1 KiB is not a multiple of 4 KiB")
        #expect(failure("-object memory-backend-ram,id=m0,size=8M") == "-object memory-backend-ram,id=m0,size=8M: size 8 MiB is below the minimum of 16 MiB")
        #expect(failure("-object memory-backend-ram,id=m0,size=1G,share=maybe") == "-object memory-backend-ram,id=m0,size=1G,share=maybe: invalid value 'maybe' for share (use on or off)")
        #expect(failure("-object memory-backend-ram,id=m0,size=1G,prealloc=2") == "-object memory-backend-ram,id=m0,size=1G,prealloc=2: invalid value '2' for prealloc (use on or off)")
        #expect(failure("-object memory-backend-ram,id=m0,size=1G,hugetlb=on") == "-object memory-backend-ram,id=m0,size=1G,hugetlb=on: unsupported parameter 'hugetlb' (supported: qom-type, id, size, share, mem-path, prealloc)")
    }

    @Test func otherObjectTypesAreRefused() {
        let supported = "(supported: memory-backend-memfd, memory-backend-file, memory-backend-ram)"
        #expect(failure("-object iothread,id=io0") == "-object iothread: unsupported object type \(supported)")
        #expect(failure("-object secret,id=s0,data=x,hugetlb=on") == "-object secret: unsupported object type \(supported)")
        #expect(failure("-object memory-backend-epc,id=e,size=1G") == "-object memory-backend-epc: unsupported object type \(supported)")
        #expect(failure("-object id=m0,size=1G") == "-object id=m0,size=1G: missing object type")
        #expect(failure(["-object", ""]) == "-object '': missing object type")
        #expect(failure("-object memory-backend-ram,=1G") == "-object memory-backend-ram,=1G: missing parameter name in '=1G' (use key=value)")
    }
}

// MARK: - -serial, -nodefaults, -nographic

@Suite struct SerialOptionTests {
    @Test(arguments: [
        ("stdio", SerialConfig.stdio),
        ("null", .null),
        ("none", SerialConfig.none),
        ("file:/x", .file(path: "/x")),
        ("file:/tmp/a,b=c", .file(path: "/tmp/a,b=c")),
        ("unix:/x,server=on,wait=off", .unixServer(path: "/x")),
        ("unix:/x,wait=off,server=on", .unixServer(path: "/x")),
        ("unix:/x,server,nowait", .unixServer(path: "/x")),
        ("unix:path=/x,server=yes,wait=no", .unixServer(path: "/x")),
        ("unix:/a,,b,server=on,wait=off", .unixServer(path: "/a,b")),
    ])
    func forms(argument: String, expected: SerialConfig) throws {
        #expect(try config(["-serial", argument]).serial == expected)
    }

    @Test func unixSocketMustListenWithoutWaiting() {
        let serverMessage = "server=on,wait=off is required (cprvmm listens on the socket and never blocks start-up waiting for a client)"
        let waitMessage = "wait=off is required (cprvmm never blocks start-up waiting for a client)"
        #expect(failure("-serial unix:/x") == "-serial unix:/x: \(serverMessage)")
        #expect(failure("-serial unix:/x,wait=off") == "-serial unix:/x,wait=off: \(serverMessage)")
        #expect(failure("-serial unix:/x,server=off,wait=off") == "-serial unix:/x,server=off,wait=off: \(serverMessage)")
        #expect(failure("-serial unix:/x,server=on") == "-serial unix:/x,server=on: \(waitMessage)")
        #expect(failure("-serial unix:/x,server=on,wait=on") == "-serial unix:/x,server=on,wait=on: \(waitMessage)")
    }

    @Test func badUnixSockets() {
        #expect(failure("-serial unix:") == "-serial unix:: missing socket path after 'unix:'")
        #expect(failure("-serial unix:,server=on,wait=off") == "-serial unix:,server=on,wait=off: missing socket path after 'unix:'")
        #expect(failure("-serial unix:/x,server=on,wait=off,reconnect=1") == "-serial unix:/x,server=on,wait=off,reconnect=1: unsupported parameter 'reconnect' (supported: path, server, wait)")
        #expect(failure("-serial unix:/x,server=maybe,wait=off") == "-serial unix:/x,server=maybe,wait=off: invalid value 'maybe' for server (use on or off)")
        let longest = "/" + String(repeating: "s", count: 106)
        #expect(throws: Never.self) { try CommandLineParser.parse(["-serial", "unix:\(longest),server=on,wait=off"]) }
        #expect(failure(["-serial", "unix:\(longest)s,server=on,wait=off"]) == "-serial unix:\(longest)s,server=on,wait=off: socket path is longer than 107 bytes")
    }

    @Test func otherBackendsAreRefused() {
        let forms = "(use stdio, null, none, file:PATH or unix:PATH,server=on,wait=off)"
        #expect(failure("-serial pty") == "-serial pty: unsupported serial backend 'pty' \(forms)")
        #expect(failure("-serial mon:stdio") == "-serial mon:stdio: unsupported serial backend 'mon' \(forms)")
        #expect(failure("-serial tcp::4444,server=on") == "-serial tcp::4444,server=on: unsupported serial backend 'tcp' \(forms)")
        #expect(failure("-serial chardev:ch0") == "-serial chardev:ch0: unsupported serial backend 'chardev' \(forms)")
        #expect(failure("-serial stdio,signal=off") == "-serial stdio,signal=off: unsupported serial backend 'stdio' \(forms)")
        #expect(failure("-serial file:") == "-serial file:: missing file name after 'file:'")
        #expect(failure(["-serial", ""]) == "-serial '': unsupported serial backend '' \(forms)")
    }

    @Test func onlyOneSerial() {
        #expect(failure("-serial stdio -serial null") == "-serial null: only one -serial is supported (already given: -serial stdio)")
        #expect(failure("-serial none -serial none") == "-serial none: only one -serial is supported (already given: -serial none)")
    }

    @Test func nodefaultsAndNographic() throws {
        #expect(try config("-nodefaults").serial == SerialConfig.none)
        #expect(try config("-nodefaults -serial stdio").serial == .stdio)
        #expect(try config("-serial file:/log -nodefaults").serial == .file(path: "/log"))
        #expect(try config("-nographic").serial == .stdio)
        #expect(try config("-nographic").serial == MachineConfig().serial)
        #expect(try config("-nographic -serial null").serial == .null)
        #expect(try config("-nodefaults -nographic").serial == SerialConfig.none)  // as QEMU
    }
}

// MARK: - -kernel, -bios, -builtin-guest

@Suite struct BootOptionTests {
    @Test func kernelAndBios() throws {
        let kernel = try config("-kernel /boot/vmlinuz")
        #expect(kernel.kernel == "/boot/vmlinuz")
        #expect(kernel.bios == nil)
        #expect(!kernel.usesBuiltinGuest)
        let bios = try config("-bios bios.bin")
        #expect(bios.bios == "bios.bin")
        #expect(!bios.usesBuiltinGuest)
        #expect(try config("-kernel a -kernel b").kernel == "b")
        #expect(failure(["-kernel", ""]) == "-kernel '': missing file name")
        #expect(failure(["-bios", ""]) == "-bios '': missing file name")
    }

    @Test func kernelAndBiosTogetherIsAnError() {
        #expect(failure("-kernel vmlinuz -bios bios.bin") == "-kernel vmlinuz: cannot be combined with -bios bios.bin (use one or the other)")
        #expect(failure("-bios bios.bin -kernel vmlinuz") == "-kernel vmlinuz: cannot be combined with -bios bios.bin (use one or the other)")
    }

    @Test func builtinGuest() throws {
        #expect(try config("-builtin-guest fill=50,mode=spin").builtinGuest == BuiltinGuestConfig(fillPercent: 50, mode: .spin))
        #expect(try config("-builtin-guest mode=sleep").builtinGuest == BuiltinGuestConfig(fillPercent: 25, mode: .sleep))
        #expect(try config("-builtin-guest fill=0").builtinGuest.fillPercent == 0)
        #expect(try config("-builtin-guest fill=90").builtinGuest.fillPercent == 90)
        #expect(try config("-builtin-guest fill=10 -builtin-guest mode=spin").builtinGuest == BuiltinGuestConfig(fillPercent: 10, mode: .spin))
        #expect(try config(["-builtin-guest", ""]).builtinGuest == BuiltinGuestConfig())
        #expect(try config("-m 16").builtinGuest.disk == .check)
        #expect(try config("-builtin-guest disk=randwrite").builtinGuest.disk == .randwrite)
        #expect(BuiltinGuestConfig.DiskMode.seqwrite.bootInfoValue == 4, "BI_DISK_MODE's numbering (guest_layout.h)")
        #expect(try config("-m 16").builtinGuest.dirtyPercent == 0)
        #expect(try config("-builtin-guest dirty=100").builtinGuest.dirtyPercent == 100)
        #expect(try config("-builtin-guest dirty=1000,fill=0 -m 16").builtinGuest.dirtyPercent == 1000)
        #expect(try config("-builtin-guest dirty=0,fill=90 -m 16").builtinGuest.dirtyPercent == 0, "no dirty area needed when off")
        #expect(try config("-builtin-guest fill=90,dirty=5 -m 1G").builtinGuest.dirtyPercent == 5)
    }

    @Test func badBuiltinGuest() {
        #expect(failure("-builtin-guest fill=95") == "-builtin-guest fill=95: invalid fill '95' (use a whole percentage of guest RAM from 0 to 90)")
        #expect(failure("-builtin-guest fill=-1") == "-builtin-guest fill=-1: invalid fill '-1' (use a whole percentage of guest RAM from 0 to 90)")
        #expect(failure("-builtin-guest fill=50%") == "-builtin-guest fill=50%: invalid fill '50%' (use a whole percentage of guest RAM from 0 to 90)")
        #expect(failure("-builtin-guest mode=idle") == "-builtin-guest mode=idle: invalid mode 'idle' (use sleep or spin)")
        #expect(failure("-builtin-guest spin") == "-builtin-guest spin: unsupported parameter 'spin' (supported: fill, mode, disk, ip, dirty)")
        #expect(failure("-builtin-guest fill=10,size=1") == "-builtin-guest fill=10,size=1: unsupported parameter 'size' (supported: fill, mode, disk, ip, dirty)")
        #expect(failure("-builtin-guest dirty=2000") == "-builtin-guest dirty=2000: invalid dirty '2000' (use a whole percentage of guest RAM to rewrite per second, from 0 to 1000)")
        #expect(failure("-builtin-guest dirty=abc") == "-builtin-guest dirty=abc: invalid dirty 'abc' (use a whole percentage of guest RAM to rewrite per second, from 0 to 1000)")
        #expect(failure("-m 64 -builtin-guest dirty=50,fill=90") == "-builtin-guest dirty=50,fill=90: dirty=50 needs 1 MiB of RAM above 8 MiB that fill= does not cover; fill=90 of -m 64 MiB leaves none (lower fill= or raise -m)")
        #expect(failure("-builtin-guest dirty=1 -m 16 -builtin-guest fill=90") == "-builtin-guest fill=90: dirty=1 needs 1 MiB of RAM above 8 MiB that fill= does not cover; fill=90 of -m 16 MiB leaves none (lower fill= or raise -m)")
        #expect(failure("-builtin-guest disk=fast") == "-builtin-guest disk=fast: invalid disk 'fast' (use check, randread, randwrite, seqread or seqwrite)")
    }

    @Test func builtinGuestExcludesKernelAndBios() {
        #expect(failure("-builtin-guest fill=50 -kernel vmlinuz") == "-builtin-guest fill=50: cannot be combined with -kernel vmlinuz (the built-in guest runs only without -kernel and -bios)")
        #expect(failure("-bios b.bin -builtin-guest mode=spin") == "-builtin-guest mode=spin: cannot be combined with -bios b.bin (the built-in guest runs only without -kernel and -bios)")
    }
}

// MARK: - Option lists

@Suite struct OptionListTests {
    private func items(_ text: String, implied: String? = "type", keys: [String]? = nil) throws -> [String] {
        try OptionList.parse(text, impliedKey: implied, keys: keys).items.map { "\($0.key)=\($0.value)" }
    }

    @Test func splitting() {
        #expect(OptionList.split("") == [])
        #expect(OptionList.split("a") == ["a"])
        #expect(OptionList.split("a,b=1") == ["a", "b=1"])
        #expect(OptionList.split("a,,b") == ["a,b"])
        #expect(OptionList.split("a,,,b") == ["a,", "b"])
        #expect(OptionList.split("a,,,,b") == ["a,,b"])
        #expect(OptionList.split("a,") == ["a"])
        #expect(OptionList.split(",a") == ["", "a"])
        #expect(OptionList.split(",") == [""])
    }

    @Test func impliedKeysFlagsAndRepeats() throws {
        #expect(try items("pc,accel=kvm") == ["type=pc", "accel=kvm"])
        #expect(try items("type=pc,x=a=b") == ["type=pc", "x=a=b"])
        #expect(try items("x=1,pc") == ["x=1", "pc=on"])
        #expect(try items("pc,server,nowait", keys: ["type", "server", "wait"]) == ["type=pc", "server=on", "wait=off"])
        #expect(try items("pc,nowait", keys: nil) == ["type=pc", "nowait=on"])
        #expect(try items("flag", implied: nil) == ["flag=on"])
        let list = try OptionList.parse("a=1,b=2,a=3", impliedKey: nil, keys: ["a", "b"])
        #expect(list["a"] == "3")
        #expect(list["b"] == "2")
        #expect(list["c"] == nil)
    }

    @Test func errors() {
        #expect(throws: OptionList.ParseError.emptyKey(element: "=1")) { try OptionList.parse("pc,=1", impliedKey: "type", keys: nil) }
        #expect(throws: OptionList.ParseError.emptyKey(element: "")) { try OptionList.parse(",a=1", impliedKey: nil, keys: nil) }
        #expect(throws: OptionList.ParseError.unknownKey("b")) { try OptionList.parse("a=1,b=2", impliedKey: nil, keys: ["a"]) }
        #expect(throws: OptionList.ParseError.unknownKey("noa")) { try OptionList.parse("x,noa", impliedKey: "t", keys: ["t"]) }
    }
}

// MARK: - Usage

@Suite struct UsageTests {
    @Test func listsEveryOption() {
        #expect(Usage.text.hasPrefix("usage: cprvmm [options]\n"))
        for option in [
            "-h or -help", "-version", "-name ", "-machine ", "-M ", "-accel kvm", "-enable-kvm", "-smp ", "-m ",
            "-nodefaults", "-no-user-config", "-object memory-backend-memfd", "-object memory-backend-file",
            "-object memory-backend-ram", "-serial ", "-display none", "-nographic", "-kernel ", "-bios ",
            "-builtin-guest ", "memfd-alloc=on|off", "memory-backend=id", "unix:path,server=on,wait=off",
            "file:path", "mode=sleep|spin", "-debugcon ", "-global isa-debugcon.iobase=", "-drive file=", "-blockdev driver=file",
            "-device virtio-blk-pci", "-boot order=c", "-log-level ", "-netdev tap", "-nic tap", "-device virtio-net-pci",
        ] {
            #expect(Usage.text.contains(option), "missing \(option)")
        }
    }

    @Test func linesFitATerminal() {
        for line in Usage.text.split(separator: "\n") {
            #expect(line.count <= 100, "too long: \(line)")
        }
    }
}

// MARK: - NICs

@Suite struct NetOptionTests {
    @Test func netdevAndDevice() throws {
        // The device may come first, as in QEMU; disks take their slots first.
        let parsed = try config("-device virtio-net-pci,netdev=n0,id=nic0,mac=02:00:00:aa:bb:cc -netdev tap,id=n0,ifname=tap0,script=no,downscript=no,vnet_hdr=off -drive file=/d,if=virtio")
        let nic = try #require(parsed.nics.first)
        #expect(nic.id == "nic0" && nic.mac == [2, 0, 0, 0xaa, 0xbb, 0xcc] && nic.slot == 3)
        #expect(nic.netdev == NetdevConfig(id: "n0", source: .name("tap0"), vnetHeader: false))
        let two = try config("-nic tap,ifname=a -nic tap,fd=5,model=virtio").nics
        #expect(two.map(\.mac) == [VirtioNetConfig.defaultMAC(0), VirtioNetConfig.defaultMAC(1)], "QEMU's MACs, one per NIC")
        #expect(two.map(\.netdev.source) == [.name("a"), .fd(5)])
        #expect(two.map(\.slot) == [2, 3])
        #expect(try config("-netdev tap,id=n0,fd=7 -device virtio-net-pci,netdev=n0,addr=0x9").nics.first?.slot == 9)
        #expect(try config("-builtin-guest ip=192.168.7.2").builtinGuest.ip == [192, 168, 7, 2])
        #expect(try config("-netdev tap,id=n0 -device virtio-net-pci,netdev=n0,romfile=/r.rom").nics.first?.romFile == "/r.rom")
        #expect(try config("-netdev tap,id=n0 -device virtio-net-pci,netdev=n0,romfile=").nics.first?.romFile == nil, "romfile= is none, as in QEMU")
    }

    @Test func errors() {
        #expect(failure("-netdev user,id=n0") == "-netdev user,id=n0: netdev type 'user' is not supported by this cprvmm version (tap only: a TAP interface the host bridges or routes)")
        #expect(failure("-netdev tap,id=n0,vhost=on") == "-netdev tap,id=n0,vhost=on: vhost=on is not supported: cprvmm serves the rings itself (its device thread), so that they cross live updates with nothing lost; use vhost=off")
        #expect(failure("-netdev tap,id=n0,script=/etc/qemu-ifup") == "-netdev tap,id=n0,script=/etc/qemu-ifup: script=/etc/qemu-ifup is not supported: cprvmm runs no scripts (set the tap up beforehand, then use script=no)")
        #expect(failure("-netdev tap,id=n0,queues=4") == "-netdev tap,id=n0,queues=4: queues=4 is not supported by this cprvmm version (one queue pair per NIC: queues=1)")
        #expect(failure("-netdev tap,id=n0,ifname=a,fd=3") == "-netdev tap,id=n0,ifname=a,fd=3: ifname= and fd= exclude each other (fd= is a tap opened by the caller)")
        #expect(failure("-netdev tap,id=n0,fd=1") == "-netdev tap,id=n0,fd=1: invalid fd '1' (the number of an open tap fd, above 2)")
        #expect(failure("-netdev tap,id=n0") == "-netdev tap,id=n0: defined but not used (add -device virtio-net-pci,netdev=n0)")
        #expect(failure("-device virtio-net-pci,netdev=x") == "-device virtio-net-pci,netdev=x: no netdev with id 'x' (define it with -netdev tap,id=x,...)")
        #expect(failure("-nic tap,model=e1000") == "-nic tap,model=e1000: model=e1000 is not supported (cprvmm's NICs are virtio-net-pci)")
        #expect(failure("-nic tap,mac=01:00:00:00:00:01") == "-nic tap,mac=01:00:00:00:00:01: mac 01:00:00:00:00:01 is a multicast address (the first byte must be even)")
        #expect(failure("-nic tap,mac=52:54:00:12:34") == "-nic tap,mac=52:54:00:12:34: invalid mac '52:54:00:12:34' (six hex bytes, as in 52:54:00:12:34:56)")
        #expect(failure("-netdev tap,id=n0 -device virtio-net-pci,netdev=n0 -device virtio-net-pci,netdev=n0") == "-device virtio-net-pci,netdev=n0: netdev 'n0' is already used by -device virtio-net-pci,netdev=n0")
        #expect(failure("-builtin-guest ip=10.0.2") == "-builtin-guest ip=10.0.2: invalid ip '10.0.2' (an IPv4 address, as in 10.0.2.15)")
    }
}

// MARK: - Debug console

@Suite struct DebugConsoleOptionTests {
    @Test func targetsAndPort() throws {
        #expect(try config("-m 16").debugcon == nil, "absent by default, as in QEMU")
        #expect(try config("-debugcon file:/tmp/log").debugcon == .file("/tmp/log"))
        #expect(try config("-debugcon stdio").debugcon == .stdio)
        #expect(try config("-debugcon null").debugcon == .null)
        #expect(try config("-debugcon stdio -debugcon none").debugcon == nil)
        #expect(try config("-m 16").debugconIOBase == 0x402)
        #expect(try config("-global isa-debugcon.iobase=0xe9").debugconIOBase == 0xE9)
    }

    @Test func errors() {
        #expect(failure("-debugcon tcp:1") == "-debugcon tcp:1: unsupported debug console (use file:PATH, stdio, null or none)")
        #expect(failure("-debugcon file:") == "-debugcon file:: unsupported debug console (use file:PATH, stdio, null or none)")
        #expect(failure("-global isa-debugcon.iobase=0x10000") == "-global isa-debugcon.iobase=0x10000: invalid iobase '0x10000' (use a port number from 0 to 0xffff)")
        #expect(failure("-global kvm-pit.lost_tick_policy=delay") == "-global kvm-pit.lost_tick_policy=delay: unsupported global property (the one supported is isa-debugcon.iobase=PORT)")
    }
}

// MARK: - Disks

@Suite struct DiskOptionTests {
    @Test func driveIfVirtio() throws {
        let disks = try config("-drive file=/d.img,format=raw,if=virtio -drive file=/e.img,if=virtio,readonly=on,cache=none,id=data").disks
        #expect(disks.count == 2)
        #expect(disks[0].id == "virtio0" && disks[0].drive.path == "/d.img" && disks[0].slot == 2 && !disks[0].drive.formatProbed)
        #expect(disks[1].id == "data" && disks[1].drive.readOnly && disks[1].drive.cache == .none && disks[1].slot == 3)
        #expect(disks[1].drive.formatProbed, "no format=: raw, after a look for a qcow2 header")
    }

    @Test func blockdevAndDevice() throws {
        // -device may come before the -blockdev it names, as in QEMU.
        let disks = try config("-device virtio-blk-pci,drive=root,id=disk0,bootindex=1,addr=0x5 -blockdev driver=file,node-name=f0,filename=/r.img,cache.direct=on -blockdev driver=raw,node-name=root,file=f0,read-only=on").disks
        let disk = try #require(disks.first)
        #expect(disk.id == "disk0" && disk.slot == 5 && disk.bootIndex == 1)
        #expect(disk.drive.path == "/r.img" && disk.drive.cache == .none && disk.drive.readOnly)
        let pair = try config("-drive file=/a,if=none,id=a -device virtio-blk-pci,drive=a,addr=2 -drive file=/b,if=virtio").disks
        #expect(pair.map(\.slot) == [2, 3], "automatic slots skip the ones given")
        #expect(Machine.bootOrder(disks) == ["/pci@i0cf8/scsi@5/disk@0,0"])
    }

    @Test func errors() {
        #expect(failure("-drive file=/d.img,format=qcow2,if=virtio") == "-drive file=/d.img,format=qcow2,if=virtio: format=qcow2 is not supported by this cprvmm version (raw images only: convert with qemu-img convert -O raw)")
        #expect(failure("-drive file=/d.img") == "-drive file=/d.img: a -drive without if= (an IDE disk in QEMU) is not supported; cprvmm's disks are virtio (add if=virtio, or if=none with -device virtio-blk-pci,drive=ID)")
        #expect(failure("-drive file=/d.img,if=ide") == "-drive file=/d.img,if=ide: if=ide is not supported; cprvmm's disks are virtio (add if=virtio, or if=none with -device virtio-blk-pci,drive=ID)")
        #expect(failure("-drive if=virtio") == "-drive if=virtio: missing file=PATH")
        #expect(failure("-drive file=/d,if=virtio,cache=unsafe") == "-drive file=/d,if=virtio,cache=unsafe: cache=unsafe is not supported (use cache=none or cache=writeback)")
        #expect(failure("-device virtio-blk-pci,drive=nope") == "-device virtio-blk-pci,drive=nope: no drive with id 'nope' (define it with -blockdev node-name=nope,... or -drive if=none,id=nope,...)")
        #expect(failure("-drive file=/a,if=virtio,id=a -device virtio-blk-pci,drive=a") == "-device virtio-blk-pci,drive=a: drive 'a' is already used by -drive file=/a,if=virtio,id=a")
        #expect(failure("-blockdev driver=qcow2,node-name=q,file=f") == "-blockdev driver=qcow2,node-name=q,file=f: driver=qcow2 is not supported by this cprvmm version (raw images only: driver=file, optionally under driver=raw)")
        #expect(failure("-drive file=/a,if=none,id=a -device virtio-blk-pci,drive=a,addr=1") == "-device virtio-blk-pci,drive=a,addr=1: invalid addr '1' (use a slot from 0x2 to 0x1f; slots 0 and 1 hold the chipset)")
        #expect(failure("-boot order=d") == "-boot order=d: boot order 'd' is not supported (cprvmm boots from disks only: order=c)")
        #expect(failure("-boot menu=on") == "-boot menu=on: menu=on is not supported (cprvmm has no display or keyboard for a boot menu)")
        #expect(failure("-drive file=/a,if=virtio,id=x -drive file=/b,if=virtio,id=x") == "-drive file=/b,if=virtio,id=x: drive id 'x' is already used by -drive file=/a,if=virtio,id=x")
    }

    @Test func bootOrderC() throws {
        #expect(try config("-boot order=c,menu=off").disks.isEmpty)
        #expect(try config("-boot c").disks.isEmpty)
    }
}

// MARK: - Logging

@Suite struct LogLevelTests {
    @Test func levels() throws {
        #expect(try config("-m 16").logLevel == "info")
        #expect(try config("-log-level debug").logLevel == "debug")
        #expect(try config("--log-level error").logLevel == "error")
        #expect(failure("-log-level loud") == "-log-level loud: unknown log level 'loud' (use error, warning, info or debug)")
        #expect(Log.Level.allCases.map(\.name) == ["error", "warning", "info", "debug"])
        #expect(Log.Level.warning < Log.Level.info, "syslog order: lower is more severe")
    }

    @Test("stderr is the journal only when JOURNAL_STREAM names it")
    func journalStream() {
        unsetenv("JOURNAL_STREAM")
        #expect(!Log.stderrIsJournal())
        setenv("JOURNAL_STREAM", "1:2", 1)
        #expect(!Log.stderrIsJournal(), "another device and inode than stderr's")
        unsetenv("JOURNAL_STREAM")
    }
}
