import Foundation
import Testing

extension VirtualMachines {
    @Suite(.enabled(if: Host.kvmAvailable, Host.noKVMReason))
    struct SerialBackendTests {
        @Test("-serial file:PATH writes the console to the file")
        func fileBackend() throws {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-serial-\(UUID().uuidString)").path
            defer { unlink(path) }
            let vm = try VMProcess(["-m", "32", "-serial", "file:\(path)"])
            var text = ""
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
                if text.contains("tick 100\n") { break }
                usleep(50_000)
            }
            _ = vm.terminate()
            #expect(text.contains("tick 100\n"))
            #expect(!vm.stdout.contains("tick"), "console leaked to stdout")
        }

        @Test("-serial unix:PATH,server=on,wait=off serves the console to a client, both directions")
        func unixBackend() throws {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-\(UInt32.random(in: 0...UInt32.max)).sock").path
            let vm = try VMProcess(["-m", "32", "-serial", "unix:\(path),server=on,wait=off"])
            defer { _ = vm.terminate() }
            var info = stat()
            let deadline = Date().addingTimeInterval(30)
            while stat(path, &info) != 0 && Date() < deadline { usleep(20_000) }
            #expect(info.st_mode & 0o777 == 0o600, "console socket must be owner-only")
            let client = try UnixClient(path: path)
            #expect(client.read(until: "tick ", timeout: 30).contains("tick "))
            client.write("over the socket\n")
            #expect(client.read(until: "echo: over the socket", timeout: 30).contains("echo: over the socket"))
        }

        @Test("-serial null discards the console; -nodefaults has no serial port at all")
        func nullAndNone() throws {
            let null = try VMProcess(["-m", "32", "-serial", "null"])
            usleep(500_000)
            _ = null.terminate()
            #expect(!null.stdout.contains("tick"))
            #expect(!null.stderr.contains("unknown I/O port"))

            let none = try VMProcess(["-m", "32", "-nodefaults"])
            usleep(1_500_000)
            _ = none.terminate()
            #expect(!none.stdout.contains("tick"))
            // Without a UART the guest's console writes hit an empty port: logged, rate-limited, ignored.
            #expect(none.stderr.contains("unknown I/O port 0x3f8"))
            #expect(none.stderr.components(separatedBy: "\n").count < 40, "unknown-port log is not rate-limited")
        }
    }
}

/// A blocking UNIX-socket client with timeouts, for console sockets.
final class UnixClient {
    let fd: Int32
    private var received = ""

    /// `nonBlocking`: the connect fails at once (EAGAIN) when the listener's backlog is full.
    init(path: String, nonBlocking: Bool = false) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path.utf8)
            raw[path.utf8.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else {
            let code = errno
            close(fd)
            throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
        }
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func write(_ text: String) {
        _ = text.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    }

    /// Reads until `marker` appears or the timeout passes; returns everything read so far.
    func read(until marker: String, timeout: Double) -> String {
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !received.contains(marker) && Date() < deadline {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n > 0 { received += String(decoding: buffer[..<n], as: UTF8.self) }
            if n == 0 { break }
        }
        return received
    }
}
