import Shared
import Testing

@testable import cprctl

/// Whole command lines through Cprctl.run, as main.swift runs them (no QMP server needed).
@Suite struct CprctlRunTests {
    @Test func help() {
        let result = Cprctl.run(["--help"], runtimeBase: "/nonexistent")
        #expect(result.exitStatus == 0)
        #expect(result.output.hasPrefix("Usage: cprctl COMMAND [OPTIONS]\n"))
        #expect(result.output.contains("status [NAME | --socket PATH] [--json]"))
        #expect(result.output.contains("Exit status:\n  0 on success, 1 on any error"))
        #expect(result.errorOutput == "")
    }

    @Test func version() {
        let result = Cprctl.run(["--version"], runtimeBase: "/nonexistent")
        #expect(result == CprctlResult(exitStatus: 0, output: "cprctl version \(BuildInfo.version) (build id \(BuildInfo.buildID))\n"))
    }

    @Test func usageErrorsExitWithOneAndOneLine() {
        #expect(
            Cprctl.run(["bogus"]) == CprctlResult(exitStatus: 1, errorOutput: "cprctl: unknown command 'bogus' (try 'cprctl --help')\n"))
        #expect(Cprctl.run([]) == CprctlResult(exitStatus: 1, errorOutput: "cprctl: missing command (try 'cprctl --help')\n"))
    }

    @Test func noVMRunning() {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let result = Cprctl.run(["status"], runtimeBase: directory.path)
        #expect(
            result
                == CprctlResult(
                    exitStatus: 1,
                    errorOutput: "cprctl: no VM found in \(directory.path) (is one running? name it, or use --socket PATH)\n"))
    }

    @Test func namedVMNotRunning() {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.path + "/web1/qmp.sock"
        let result = Cprctl.run(["status", "web1"], runtimeBase: directory.path)
        #expect(
            result == CprctlResult(exitStatus: 1, errorOutput: "cprctl: cannot connect to \(path): no such file (is the VM running?)\n"))
    }

    @Test func staleSocketOfTheOnlyVM() {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        directory.makeDirectory("web1")
        directory.makeSocketFile("web1/qmp.sock")
        let path = directory.path + "/web1/qmp.sock"
        let result = Cprctl.run(["status", "--json"], runtimeBase: directory.path)
        #expect(
            result
                == CprctlResult(exitStatus: 1, errorOutput: "cprctl: cannot connect to \(path): connection refused (is the VM running?)\n"))
    }
}
