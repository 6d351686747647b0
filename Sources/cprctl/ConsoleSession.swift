import Glibc
import Shared

/// Copies bytes between a terminal or pipe and a connected console socket until one side
/// ends it: input to the socket, the socket to output, both watched with poll(2).
struct ConsoleSession {
    /// Ctrl-]: the byte that ends the session (telnet's and virsh console's escape).
    static let escapeByte: UInt8 = 0x1D

    /// Input read ahead of what the socket took. Past this cprctl stops reading input until
    /// the VM catches up (a paused guest reads nothing), so memory stays bounded.
    static let maxPendingInput = 64 << 10

    /// After Ctrl-], how long the bytes typed before it may take to reach a VM that is slow
    /// to read them; a VM that reads nothing must not keep cprctl from leaving.
    static let escapeFlushMilliseconds = 1000

    enum Outcome: Equatable {
        /// Ctrl-] arrived on the input.
        case escaped
        /// The VM closed the connection: `receivedBytes` says whether it ever sent anything,
        /// `inputEnded` whether cprctl had shut down its sending side first.
        case closedByVM(receivedBytes: Int, inputEnded: Bool)
        /// Output cannot be written any more (the reader of a pipe went away).
        case outputClosed
        /// A read or write failed; the text says which and why.
        case failed(String)
    }

    let input: Int32
    let output: Int32
    /// Connected and non-blocking.
    let socket: Int32

    func run() -> Outcome {
        var pending: [UInt8] = []
        var inputOpen = true
        var sendingShutDown = false
        var escapeDeadline: UInt64?
        var received = 0
        var buffer = [UInt8](repeating: 0, count: 65536)

        while true {
            if let deadline = escapeDeadline, pending.isEmpty || monotonicMilliseconds() >= deadline { return .escaped }
            if !inputOpen && pending.isEmpty && !sendingShutDown {
                // Input over and all of it sent: tell the VM no more is coming, and go on
                // printing what it sends.
                shutdown(socket, Int32(SHUT_WR))
                sendingShutDown = true
            }
            let readInput = inputOpen && escapeDeadline == nil && pending.count < Self.maxPendingInput
            var fds = [
                pollfd(fd: socket, events: Int16(POLLIN) | (pending.isEmpty ? 0 : Int16(POLLOUT)), revents: 0),
                pollfd(fd: readInput ? input : -1, events: Int16(POLLIN), revents: 0),
            ]
            // Without a Ctrl-] to finish, wait for as long as nothing happens (-1).
            let timeout = escapeDeadline.map { max(0, Int32(clamping: Int64($0) - Int64(monotonicMilliseconds()))) } ?? -1
            if poll(&fds, 2, timeout) < 0 {
                if errno == EINTR { continue }
                return .failed("poll: \(describe(errno))")
            }

            let socketEvents = fds[0].revents
            if socketEvents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                let count = read(socket, &buffer, buffer.count)
                if count == 0 { return .closedByVM(receivedBytes: received, inputEnded: !inputOpen) }
                if count < 0 {
                    if errno != EAGAIN && errno != EINTR {
                        // A reset is the VM going away as surely as an orderly close.
                        if errno == ECONNRESET { return .closedByVM(receivedBytes: received, inputEnded: !inputOpen) }
                        return .failed("cannot read the console: \(describe(errno))")
                    }
                } else {
                    received += count
                    if let failure = writeAll(output, buffer[..<count]) { return failure }
                }
            }
            if socketEvents & Int16(POLLOUT) != 0, !pending.isEmpty {
                let count = send(socket, pending, pending.count, Int32(MSG_NOSIGNAL))
                if count > 0 {
                    pending.removeFirst(count)
                } else if count < 0, errno != EAGAIN, errno != EINTR {
                    if errno == EPIPE || errno == ECONNRESET { return .closedByVM(receivedBytes: received, inputEnded: !inputOpen) }
                    return .failed("cannot write to the console: \(describe(errno))")
                }
            }

            // POLLNVAL too: a closed stdin is an input that has ended.
            guard readInput, fds[1].revents != 0 else { continue }
            let count = read(input, &buffer, min(buffer.count, Self.maxPendingInput - pending.count))
            if count < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            if count <= 0 {
                inputOpen = false
                continue
            }
            let chunk = buffer[..<count]
            if let escape = chunk.firstIndex(of: Self.escapeByte) {
                pending += chunk[..<escape]
                escapeDeadline = monotonicMilliseconds() + UInt64(Self.escapeFlushMilliseconds)
            } else {
                pending += chunk
            }
        }
    }

    /// Writes everything, waiting for a slow reader (poll, in case the fd is non-blocking).
    private func writeAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Outcome? {
        var offset = bytes.startIndex
        while offset < bytes.endIndex {
            let count = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if count > 0 {
                offset += count
            } else if count < 0 && errno == EAGAIN {
                var waiter = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&waiter, 1, -1)
            } else if count < 0 && errno == EINTR {
                continue
            } else if count < 0 && errno == EPIPE {
                return .outputClosed
            } else {
                return .failed("cannot write the console's output: \(describe(errno))")
            }
        }
        return nil
    }

    private func monotonicMilliseconds() -> UInt64 {
        ProcessClock.monotonicNanoseconds() / 1_000_000
    }

    private func describe(_ code: Int32) -> String {
        strerror(code).map { String(cString: $0).lowercased() } ?? "errno \(code)"
    }
}
