import Foundation
import Testing

/// Bad input: one line on stderr that names the option and the problem, exit status 1.
/// These need no KVM (they fail before /dev/kvm is opened, or fail opening it).
struct CommandLineErrorTests {
    @Test("errors are one line naming the option, with exit status 1", arguments: [
        (["-foo"], "cprvmm: -foo: unknown option (see cprvmm --help)"),
        (["-m", "12Q"], "cprvmm: -m 12Q: invalid size"),
        (["-chardev", "socket,id=c0"], "cprvmm: -chardev: not supported by this cprvmm version"),
        (["-qmp", "tcp:localhost:4444"], "cprvmm: -qmp tcp:localhost:4444: unsupported QMP transport"),
        (["-machine", "memory-backend=nope"], "cprvmm: -machine memory-backend=nope: no -object memory-backend-* with id=nope"),
        (["-kernel", "/nonexistent/kernel"], "cprvmm: -kernel /nonexistent/kernel: no such file or directory"),
        (["-bios", "/nonexistent/bios"], "cprvmm: -bios /nonexistent/bios: no such file or directory"),
        (["-builtin-guest", "dirty=2000"], "cprvmm: -builtin-guest dirty=2000: invalid dirty '2000' (use a whole percentage of guest RAM to rewrite per second, from 0 to 1000)"),
        (["-builtin-guest", "dirty=abc"], "cprvmm: -builtin-guest dirty=abc: invalid dirty 'abc'"),
        (["-builtin-guest", "dirty=50,fill=100"], "cprvmm: -builtin-guest dirty=50,fill=100: invalid fill '100' (use a whole percentage of guest RAM from 0 to 90)"),
        (["-m", "64", "-builtin-guest", "dirty=50,fill=90"], "cprvmm: -builtin-guest dirty=50,fill=90: dirty=50 needs 1 MiB of RAM above 8 MiB that fill= does not cover; fill=90 of -m 64 MiB leaves none (lower fill= or raise -m)"),
    ])
    func optionErrors(arguments: [String], expected: String) throws {
        let result = try runCprvmm(arguments)
        #expect(result.status == 1)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "expected one line, got: \(result.stderr)")
        #expect(result.stderr.hasPrefix(expected), "got: \(result.stderr)")
    }

    @Test("a file that is not ELF is refused as a kernel")
    func notAnElf() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("not-elf-\(UUID().uuidString)").path
        FileManager.default.createFile(atPath: path, contents: Data("#!/bin/sh\n".utf8))
        defer { unlink(path) }
        let result = try runCprvmm(["-kernel", path])
        #expect(result.status == 1)
        #expect(result.stderr.contains("-kernel \(path): not an ELF file"))
    }

    @Test("a firmware image of the wrong size is refused")
    func badFirmwareSize() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("bios-\(UUID().uuidString)").path
        FileManager.default.createFile(atPath: path, contents: Data(count: 1000))
        defer { unlink(path) }
        let result = try runCprvmm(["-bios", path])
        #expect(result.status == 1)
        #expect(result.stderr.contains("is not a non-zero multiple of 64 KiB"))
    }

    @Test("--version names the version and the build id; --help lists the options")
    func versionAndHelp() throws {
        let version = try runCprvmm(["--version"])
        #expect(version.status == 0)
        let line = version.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(line.hasPrefix("cprvmm version "))
        // A real GNU build id: 20 bytes of SHA-1 in hex.
        let id = line.components(separatedBy: "(build id ").last?.dropLast() ?? ""
        #expect(id.count == 40 && id.allSatisfy(\.isHexDigit), "build id: \(line)")

        let help = try runCprvmm(["--help"])
        #expect(help.status == 0)
        for option in ["-m", "-smp", "-machine", "-object", "-serial", "-kernel", "-bios", "-builtin-guest"] {
            #expect(help.stdout.contains(option), "--help does not mention \(option)")
        }
    }
}
