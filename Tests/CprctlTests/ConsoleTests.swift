import Foundation
import Glibc
import Shared
import Testing

@testable import cprctl

/// `cprctl console` against a stand-in for the VM's end of the console socket: a socketpair
/// (for ConsoleSession) or a listening socket (for the whole command), with pipes for stdin
/// and stdout. No VM needed; Tests/EndToEndTests/CprctlConsoleTests.swift drives a real one.
@Suite struct ConsoleTests {
    @Test(arguments: [
        (["console"], ConsoleOptions()),
        (["console", "web1"], ConsoleOptions(target: .name("web1"))),
        (["console", "--socket", "/run/x/console.sock"], ConsoleOptions(target: .socket("/run/x/console.sock"))),
        (["console", "--socket=/tmp/c.sock"], ConsoleOptions(target: .socket("/tmp/c.sock"))),
    ] as [([String], ConsoleOptions)])
    func parsing(arguments: [String], expected: ConsoleOptions) throws {
        #expect(try ArgumentParser.parse(arguments) == .console(expected))
    }

    @Test(arguments: [
        (["console", "a", "b"], "console takes one VM name, got 2: a b"),
        (["console", "web1", "--socket", "/x"], "give a VM name or --socket PATH, not both"),
        (["console", "--json"], "unknown option '--json' for console (try 'cprctl --help')"),
        (["console", "--socket"], "option '--socket' needs a value (try 'cprctl --help')"),
        (["console", "--socket="], "option '--socket' needs a path"),
    ] as [([String], String)])
    func parsingErrors(arguments: [String], message: String) {
        #expect(throws: UsageError(message)) { try ArgumentParser.parse(arguments) }
    }

    @Test("guest output reaches stdout, stdin reaches the guest, and Ctrl-] ends the session mid-chunk")
    func bothDirectionsThenEscape() throws {
        let link = try ConsoleLink()
        link.vmSend("tick 1\ntick 2\n")
        link.type("ls\n")
        #expect(link.vmReceive(until: "ls\n") == "ls\n")
        #expect(link.readOutput(until: "tick 2\n").hasSuffix("tick 2\n"))
        // What comes before Ctrl-] in the same read still goes; what comes after does not.
        link.type("last\u{1D}never\n")
        #expect(link.waitForOutcome() == .escaped)
        #expect(link.vmReceive(until: "last") == "last")
        #expect(link.vmReceiveRest() == "", "bytes after Ctrl-] reached the VM")
    }

    @Test("at the end of stdin the VM sees its input end, and what it sends afterwards is still printed")
    func endOfInputHalfCloses() throws {
        let link = try ConsoleLink()
        link.type("bye\n")
        link.closeInput()
        #expect(link.vmReceive(until: "bye\n") == "bye\n")
        #expect(link.vmReceiveRest() == "", "the VM's side did not see the end of input")
        link.vmSend("answer after EOF\n")
        #expect(link.readOutput(until: "answer after EOF\n").hasSuffix("answer after EOF\n"))
        link.vmClose()
        #expect(link.waitForOutcome() == .closedByVM(receivedBytes: 17, inputEnded: true))
    }

    @Test("input that ends before the socket took it all still reaches the VM whole, then its end")
    func largeInputThenEnd() throws {
        let link = try ConsoleLink(sessionSendBuffer: 4096)
        let text = String(repeating: "0123456789abcdef", count: 20_000)
        link.typeInBackground(text, thenClose: true)
        let received = link.vmReceiveRest(timeout: 30)
        #expect(received.count == text.utf8.count && received == text, "received \(received.count) of \(text.utf8.count) bytes")
    }

    @Test("Ctrl-] leaves within about a second even when the VM reads nothing")
    func escapeFromAStalledVM() throws {
        let link = try ConsoleLink(sessionSendBuffer: 4096)
        link.fillSessionSendBuffer()
        let started = Date()
        link.type("stuck\u{1D}")
        #expect(link.waitForOutcome(timeout: 10) == .escaped)
        let elapsed = Date().timeIntervalSince(started)
        #expect(elapsed < 5, "took \(elapsed) s")
    }

    @Test("the whole command: the VM closing the console ends it with exit 0 and one line")
    func vmClosesTheConsole() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        directory.makeDirectory("web1")
        directory.makeSocketFile("web1/qmp.sock")
        let server = try ConsoleServer(path: directory.path + "/web1/console.sock") { client in
            _ = "hello from the guest\n".withCString { send(client, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            usleep(1_200_000)  // past the window in which a close reads as a refusal
        }
        let pipes = ConsolePipes()
        // No NAME: the only VM in the runtime directory, found by its qmp.sock.
        let result = ConsoleCommand.run(ConsoleOptions(), runtimeBase: directory.path, input: pipes.input, output: pipes.output)
        server.wait()
        #expect(result == CprctlResult(exitStatus: 0, errorOutput: "cprctl: the console of web1 closed\n"))
        #expect(pipes.readOutput() == "hello from the guest\n")
    }

    @Test("a console that closes at once, silent, is taken for a second client turned away")
    func secondClientTurnedAway() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.path + "/console.sock"
        let server = try ConsoleServer(path: path) { _ in }
        let pipes = ConsolePipes()
        let result = ConsoleCommand.run(ConsoleOptions(target: .socket(path)), runtimeBase: "/nonexistent", input: pipes.input, output: pipes.output)
        server.wait()
        #expect(
            result
                == .failure(
                    "the console at \(path) closed as soon as cprctl connected: cprvmm serves one console client at a time (is another one attached?)"))
    }

    @Test("a missing console socket is named with the option the VM needs")
    func missingSocket() {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.path + "/web1/console.sock"
        let named = Cprctl.run(["console", "web1"], runtimeBase: directory.path)
        #expect(
            named
                == CprctlResult(
                    exitStatus: 1,
                    errorOutput: "cprctl: no console socket at \(path): the VM must run with -serial unix:\(path),server=on,wait=off (is it running?)\n"))
        directory.makeDirectory("web1")
        directory.makeSocketFile("web1/console.sock")
        let stale = Cprctl.run(["console", "--socket", path], runtimeBase: directory.path)
        #expect(stale == CprctlResult(exitStatus: 1, errorOutput: "cprctl: cannot connect to \(path): connection refused (is the VM running?)\n"))
    }
}

/// A ConsoleSession running on its own thread between pipes and one end of a socketpair;
/// the test plays the VM on the other end.
final class ConsoleLink: @unchecked Sendable {
    private let pipes = ConsolePipes()
    private let vm: Int32
    private let sessionEnd: Int32
    private let done = DispatchSemaphore(value: 0)
    private var outcome: ConsoleSession.Outcome?
    private var vmReceived = ""
    private var printed = ""

    init(sessionSendBuffer: Int32? = nil) throws {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw POSIXError(.EIO)
        }
        vm = pair[0]
        sessionEnd = pair[1]
        if var size = sessionSendBuffer {
            setsockopt(sessionEnd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        _ = fcntl(sessionEnd, F_SETFL, fcntl(sessionEnd, F_GETFL) | O_NONBLOCK)
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(vm, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Starts the session on first use, so a test can prepare the socket first.
    private lazy var started: Void = {
        let session = ConsoleSession(input: pipes.input, output: pipes.output, socket: sessionEnd)
        Thread.detachNewThread { [self] in
            outcome = session.run()
            done.signal()
        }
    }()

    deinit {
        close(vm)
        close(sessionEnd)
    }

    func type(_ text: String) {
        _ = started
        pipes.write(text)
    }

    func closeInput() { pipes.closeInput() }

    /// Types on another thread: a pipe holds only 64 KiB until the session reads it.
    func typeInBackground(_ text: String, thenClose: Bool) {
        _ = started
        Thread.detachNewThread { [pipes] in
            pipes.write(text)
            if thenClose { pipes.closeInput() }
        }
    }

    func vmSend(_ text: String) {
        _ = started
        _ = text.withCString { send(vm, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    }

    func vmClose() { shutdown(vm, Int32(SHUT_RDWR)) }

    /// Fills the socket from the session's side until it would block, as a VM that stopped
    /// reading leaves it.
    func fillSessionSendBuffer() {
        let chunk = [UInt8](repeating: 0x41, count: 4096)
        while send(sessionEnd, chunk, chunk.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) > 0 {}
        _ = started
    }

    /// What the VM received, up to and including `marker` (or all of it after a timeout).
    func vmReceive(until marker: String, timeout: Double = 10) -> String {
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !vmReceived.contains(marker) && Date() < deadline {
            let count = recv(vm, &buffer, buffer.count, 0)
            if count == 0 { break }
            if count > 0 { vmReceived += String(decoding: buffer[..<count], as: UTF8.self) }
        }
        guard let range = vmReceived.range(of: marker) else { return vmReceived }
        defer { vmReceived.removeSubrange(..<range.upperBound) }
        return String(vmReceived[..<range.upperBound])
    }

    /// Whatever else reaches the VM until its input ends ("" when it ended with nothing more).
    func vmReceiveRest(timeout: Double = 3) -> String {
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            let count = recv(vm, &buffer, buffer.count, 0)
            if count == 0 { return vmReceived }
            if count > 0 { vmReceived += String(decoding: buffer[..<count], as: UTF8.self) }
            if count < 0 && errno != EAGAIN && errno != EINTR { break }
            // After an escape the session's end may simply stay open: wait for the outcome.
            if count < 0, outcome != nil { return vmReceived }
        }
        return vmReceived + "(input did not end)"
    }

    func readOutput(until marker: String, timeout: Double = 10) -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while !printed.contains(marker) && Date() < deadline {
            printed += pipes.readOutput(timeout: 0.1)
        }
        return printed
    }

    func waitForOutcome(timeout: Double = 10) -> ConsoleSession.Outcome? {
        _ = started
        guard done.wait(timeout: .now() + timeout) == .success else { return nil }
        return outcome
    }
}

/// Stdin and stdout for a console: the test writes the input and reads the output.
final class ConsolePipes: @unchecked Sendable {
    let input: Int32
    let output: Int32
    private var inputWriter: Int32
    private let outputReader: Int32

    init() {
        var inputPipe: [Int32] = [-1, -1]
        var outputPipe: [Int32] = [-1, -1]
        pipe(&inputPipe)
        pipe(&outputPipe)
        input = inputPipe[0]
        inputWriter = inputPipe[1]
        output = outputPipe[1]
        outputReader = outputPipe[0]
        _ = fcntl(outputReader, F_SETFL, fcntl(outputReader, F_GETFL) | O_NONBLOCK)
    }

    deinit {
        closeInput()
        [input, output, outputReader].forEach { close($0) }
    }

    func write(_ text: String) {
        _ = text.withCString { Glibc.write(inputWriter, $0, strlen($0)) }
    }

    func closeInput() {
        if inputWriter >= 0 { close(inputWriter) }
        inputWriter = -1
    }

    /// What the session printed so far, waiting up to `timeout` for the first byte.
    func readOutput(timeout: Double = 0) -> String {
        var waiter = pollfd(fd: outputReader, events: Int16(POLLIN), revents: 0)
        _ = poll(&waiter, 1, Int32(timeout * 1000))
        var text = ""
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(outputReader, &buffer, buffer.count)
            guard count > 0 else { return text }
            text += String(decoding: buffer[..<count], as: UTF8.self)
        }
    }
}

/// A listening console socket that accepts one client, runs `serve` with it on a thread,
/// then closes it.
final class ConsoleServer: @unchecked Sendable {
    private let listener: Int32
    private let finished = DispatchSemaphore(value: 0)

    init(path: String, serve: @escaping @Sendable (Int32) -> Void) throws {
        listener = listeningSilentSocket(path)
        guard listener >= 0 else { throw POSIXError(.EADDRINUSE) }
        Thread.detachNewThread { [listener, finished] in
            let client = accept(listener, nil, nil)
            if client >= 0 {
                serve(client)
                close(client)
            }
            finished.signal()
        }
    }

    func wait() {
        _ = finished.wait(timeout: .now() + 10)
        close(listener)
    }
}
