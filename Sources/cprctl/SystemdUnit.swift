import CLinux
import Glibc
import Shared

/// What systemd knows about the unit that runs a VM (units/cprvmm@.service, instance = VM
/// name), read with `systemctl show`. Nil when there is no systemd, no such unit, or the
/// name cannot be an instance name as is.
enum SystemdUnit {
    static let properties = ["Id", "LoadState", "ActiveState", "SubState", "MainPID", "NRestarts", "NFileDescriptorStore", "StatusText"]

    static func unitName(forVM name: String) -> String? {
        let allowed = name.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7A) || byte == 0x2D || byte == 0x5F || byte == 0x2E
        }
        return allowed && !name.isEmpty ? "cprvmm@\(name).service" : nil
    }

    /// `systemctl show` of the VM's unit, as JSON (property name -> value), if it is loaded.
    static func query(vmName: String) -> JSONValue? {
        guard let unit = unitName(forVM: vmName) else { return nil }
        let command = "exec systemctl show --no-pager " + properties.map { "-p \($0)" }.joined(separator: " ") + " \(unit) 2>/dev/null"
        guard let output = run(command) else { return nil }
        var object: JSONObject = [:]
        for line in output.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            object[String(line[..<equals])] = .string(String(line[line.index(after: equals)...]))
        }
        guard object["LoadState"]?.stringValue == "loaded" else { return nil }
        return .object(object)
    }

    /// "cprvmm@web1.service active (running), MainPID 123, restarts 0, 3 fds in its fd store".
    static func summary(_ unit: JSONValue) -> String {
        func value(_ key: String) -> String { unit[key]?.stringValue ?? "?" }
        return "\(value("Id")) \(value("ActiveState")) (\(value("SubState"))), MainPID \(value("MainPID")), restarts \(value("NRestarts")), \(value("NFileDescriptorStore")) fds in its fd store"
    }

    /// The command's stdout when it exits 0 within 5 s, else nil.
    private static func run(_ command: String) -> String? {
        var fds: [Int32] = [-1, -1]
        guard clinux_pipe2(&fds, O_CLOEXEC) == 0 else { return nil }
        let pid = clinux_spawn_shell(command, fds[1], 1)
        close(fds[1])
        defer { close(fds[0]) }
        guard pid > 0 else { return nil }
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var poller = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        let deadline = ProcessClock.monotonicNanoseconds() + 5_000_000_000
        while ProcessClock.monotonicNanoseconds() < deadline {
            guard poll(&poller, 1, 100) >= 0 || errno == EINTR else { break }
            guard poller.revents != 0 else { continue }
            let count = read(fds[0], &buffer, buffer.count)
            if count <= 0 { break }
            output += buffer[..<count]
        }
        var status: Int32 = 0
        if ProcessClock.monotonicNanoseconds() >= deadline { kill(-pid, SIGKILL) }
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else { return nil }
        return String(decoding: output, as: UTF8.self)
    }
}
