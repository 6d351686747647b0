import Shared
import Testing

@testable import cprctl

@Suite struct TargetResolutionTests {
    @Test func explicitSocketIsUsedAsIs() throws {
        #expect(
            try TargetResolver.resolve(.socket("/tmp/q.sock"), base: "/nonexistent") == ResolvedTarget(socketPath: "/tmp/q.sock", name: nil)
        )
    }

    @Test func nameMapsIntoTheRuntimeDirectory() throws {
        #expect(
            try TargetResolver.resolve(.name("web1"), base: "/run/cprvmm")
                == ResolvedTarget(socketPath: "/run/cprvmm/web1/qmp.sock", name: "web1"))
    }

    @Test func invalidNameIsRefused() {
        #expect(throws: TargetResolutionError.invalidName(InvalidVMName(name: "a/b", reason: "a name cannot contain '/'"))) {
            try TargetResolver.resolve(.name("a/b"), base: "/run/cprvmm")
        }
    }

    @Test func noVM() {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        directory.makeDirectory("not-a-vm")
        #expect(throws: TargetResolutionError.noVM(base: directory.path)) { try TargetResolver.resolve(.automatic, base: directory.path) }
        #expect(
            TargetResolutionError.noVM(base: "/run/cprvmm").description
                == "no VM found in /run/cprvmm (is one running? name it, or use --socket PATH)")
        #expect(throws: TargetResolutionError.noVM(base: "/nonexistent/x")) {
            try TargetResolver.resolve(.automatic, base: "/nonexistent/x")
        }
    }

    @Test func theOnlyVMIsChosen() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        directory.makeDirectory("web1")
        directory.makeSocketFile("web1/qmp.sock")
        #expect(
            try TargetResolver.resolve(.automatic, base: directory.path)
                == ResolvedTarget(socketPath: directory.path + "/web1/qmp.sock", name: "web1"))
    }

    @Test func severalVMsMustBeNamed() {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        for name in ["web2", "db", "web1"] {
            directory.makeDirectory(name)
            directory.makeSocketFile(name + "/qmp.sock")
        }
        let error = TargetResolutionError.severalVMs(base: directory.path, names: ["db", "web1", "web2"])
        #expect(throws: error) { try TargetResolver.resolve(.automatic, base: directory.path) }
        #expect(error.description == "3 VMs found in \(directory.path): db, web1, web2 (name one: cprctl status NAME)")
    }
}
