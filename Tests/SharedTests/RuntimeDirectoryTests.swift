import Testing

@testable import Shared

@Suite struct RuntimeDirectoryTests {
    @Test func baseComesFromTheEnvironmentValue() {
        #expect(RuntimeDirectory.base(environmentValue: nil) == "/run/cprvmm")
        #expect(RuntimeDirectory.base(environmentValue: "") == "/run/cprvmm")
        #expect(RuntimeDirectory.base(environmentValue: "/tmp/vms") == "/tmp/vms")
        #expect(RuntimeDirectory.base(environmentValue: "/tmp/vms//") == "/tmp/vms")
        #expect(RuntimeDirectory.base(environmentValue: "/") == "/")
    }

    @Test func socketPaths() throws {
        #expect(try RuntimeDirectory.directory(for: "web1", in: "/r") == "/r/web1")
        #expect(try RuntimeDirectory.qmpSocket(for: "web1", in: "/r") == "/r/web1/qmp.sock")
        #expect(try RuntimeDirectory.hmpSocket(for: "web1", in: "/r") == "/r/web1/hmp.sock")
        #expect(try RuntimeDirectory.consoleSocket(for: "web1", in: "/r") == "/r/web1/console.sock")
        #expect(try RuntimeDirectory.qmpSocket(for: "x", in: "/") == "/x/qmp.sock")
        #expect(try RuntimeDirectory.qmpSocket(for: ".hidden-ok", in: "/r") == "/r/.hidden-ok/qmp.sock")
        #expect(try RuntimeDirectory.qmpSocket(for: "vm with spaces", in: "/r") == "/r/vm with spaces/qmp.sock")
    }

    @Test(arguments: [
        ("", "a name cannot be empty"),
        (".", "a name cannot be \".\" or \"..\""),
        ("..", "a name cannot be \".\" or \"..\""),
        ("a/b", "a name cannot contain '/'"),
        ("/", "a name cannot contain '/'"),
        ("x\u{0}y", "a name cannot contain a NUL character"),
    ])
    func invalidNames(name: String, reason: String) {
        #expect(throws: InvalidVMName(name: name, reason: reason)) { try RuntimeDirectory.qmpSocket(for: name, in: "/r") }
        #expect(!RuntimeDirectory.isValid(name: name))
    }

    @Test func invalidNameMessage() {
        #expect(
            InvalidVMName(name: "a/b", reason: "a name cannot contain '/'").description
                == "invalid VM name 'a/b': a name cannot contain '/'")
    }

    @Test func listsDirectoriesHoldingAQMPSocket() {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        #expect(RuntimeDirectory.listVMs(in: directory.path) == [])
        for name in ["web2", "web1", "db"] {
            directory.makeDirectory(name)
            directory.makeSocketFile(name + "/qmp.sock")
        }
        directory.makeDirectory("empty")  // no socket: not a VM
        directory.makeDirectory("plain")
        directory.makeFile("plain/qmp.sock")  // a regular file is not a socket
        directory.makeDirectory("hmp-only")
        directory.makeSocketFile("hmp-only/hmp.sock")
        directory.makeFile("stray-file")
        #expect(RuntimeDirectory.listVMs(in: directory.path) == ["db", "web1", "web2"])
        #expect(RuntimeDirectory.listVMs(in: directory.path + "/") == ["db", "web1", "web2"])
    }

    @Test func missingBaseListsNothing() {
        #expect(RuntimeDirectory.listVMs(in: "/nonexistent/cprvmm-test") == [])
    }
}
