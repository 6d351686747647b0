import CKVM
import Glibc

/// A failed system call: which call, and the errno it returned.
/// The description reads as a sentence fragment ("open /dev/kvm: permission denied").
public struct SystemError: Error, CustomStringConvertible, Equatable {
    public let operation: String
    public let errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String { "\(operation): \(SystemError.describe(errno))" }

    /// strerror, lower-cased as Linux tools print it ("No such file" → "no such file or directory").
    public static func describe(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        var message = String(cString: text)
        if let first = message.first { message = first.lowercased() + message.dropFirst() }
        return message
    }
}

/// Runs a system call that reports failure as -1 + errno, retrying on EINTR,
/// which the vCPU kick signal can cause in any thread that does not block it.
@discardableResult
@inline(__always)
func retryingOnEINTR<T: FixedWidthInteger>(_ operation: @autoclosure () -> String, _ body: () -> T) throws(SystemError) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = Glibc.errno
        if code == EINTR { continue }
        throw SystemError(operation(), errno: code)
    }
}

/// ioctl with a pointer argument, retried on EINTR. KVM_RUN must NOT use this: its EINTR is a kick.
@discardableResult
func ioctlChecked(_ fd: Int32, _ request: UInt, _ argument: UnsafeMutableRawPointer?, _ name: @autoclosure () -> String) throws(SystemError) -> Int32 {
    try retryingOnEINTR(name(), { ckvm_ioctl(fd, request, argument) })
}

/// ioctl with an integer argument (KVM_CHECK_EXTENSION, KVM_CREATE_VCPU, ...).
@discardableResult
func ioctlChecked(_ fd: Int32, _ request: UInt, value: Int, _ name: @autoclosure () -> String) throws(SystemError) -> Int32 {
    try retryingOnEINTR(name(), { ckvm_ioctl_value(fd, request, UInt(value)) })
}

/// Writes all of `bytes` to `fd`, retrying short writes and EINTR.
func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(SystemError) {
    var offset = 0
    while offset < bytes.count {
        let n = try retryingOnEINTR("write", { Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset) })
        offset += n
    }
}

/// Monotonic nanoseconds, for measuring pauses and start-up.
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
