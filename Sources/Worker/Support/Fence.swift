import CLinux

/// Memory fences for data shared with the guest through RAM (virtqueue rings).
enum Fence {
    @inline(__always) static func acquire() { clinux_fence_acquire() }
    @inline(__always) static func release() { clinux_fence_release() }
    @inline(__always) static func full() { clinux_fence_full() }
}
