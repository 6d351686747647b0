import CLinux
import Glibc

/// The host end of a virtio-net NIC: a TAP interface, opened by name or passed in as an fd.
/// With IFF_VNET_HDR every frame on the tap carries the 12-byte virtio-net header (flags,
/// GSO type and sizes, checksum start and offset, num_buffers), so checksum and segmentation
/// offloads pass between guest and host untouched. The fd is non-blocking; the device thread
/// reads it when the guest has posted receive buffers and leaves frames queued in the tap
/// (the kernel's queue, not cprvmm's memory) while it has none -- or while a live update
/// runs: the fd crosses the exec, and so do the frames waiting in it.
final class TapBackend {
    /// virtio_net_hdr_mrg_rxbuf: what VERSION_1 devices always use.
    static let headerSize = 12

    let fd: Int32
    let interfaceName: String
    /// Frames on the fd carry a virtio-net header; without it cprvmm adds and strips one
    /// and offers no offloads.
    let vnetHeader: Bool

    /// Opens the tap `config` names, or takes `inherited` (the previous image's, or the
    /// caller's `fd=`), checking that it is one.
    init(_ config: NetdevConfig, inherited: Int32?) throws {
        var name = [CChar](repeating: 0, count: 16)
        var flags: Int32 = 0
        var given: Int32?
        if case .fd(let fd) = config.source { given = fd }
        if let fd = inherited ?? given {
            let result = clinux_tap_info(fd, &name, &flags)
            guard result == 0 else {
                throw ConfigurationError("netdev \(config.id): fd \(fd) is not a TAP device (\(SystemError.describe(-result))): pass an fd of /dev/net/tun attached with TUNSETIFF")
            }
            guard flags & CLINUX_IFF_TAP != 0, flags & CLINUX_IFF_NO_PI != 0 else {
                throw ConfigurationError("netdev \(config.id): fd \(fd) is a TUN device or carries packet information; open it with IFF_TAP|IFF_NO_PI")
            }
            let hasHeader = flags & CLINUX_IFF_VNET_HDR != 0
            if config.vnetHeader == true && !hasHeader {
                throw ConfigurationError("netdev \(config.id): vnet_hdr=on, but fd \(fd) was opened without IFF_VNET_HDR")
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            self.fd = fd
            vnetHeader = hasHeader && config.vnetHeader != false
        } else if case .name(let wanted) = config.source {
            let withHeader = config.vnetHeader != false
            let fd = clinux_tap_open(wanted, withHeader ? CLINUX_IFF_VNET_HDR : 0, &name)
            guard fd >= 0 else {
                let hint = -fd == EPERM ? " (creating or attaching a tap needs CAP_NET_ADMIN, or a tap made for this user: ip tuntap add NAME mode tap user USER)"
                    : -fd == ENOENT ? " (no /dev/net/tun: load the tun module)" : -fd == EBUSY ? " (another process holds it)" : ""
                throw ConfigurationError("netdev \(config.id): cannot open tap '\(wanted)': \(SystemError.describe(-fd))\(hint)")
            }
            self.fd = fd
            vnetHeader = withHeader
        } else {
            throw ConfigurationError("netdev \(config.id): no tap to open")  // fd= without an fd: not reached
        }
        interfaceName = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if vnetHeader {
            let result = clinux_tap_set_vnet_header_size(fd, Int32(TapBackend.headerSize))
            guard result == 0 else { throw ConfigurationError("netdev \(config.id): TUNSETVNETHDRSZ: \(SystemError.describe(-result))") }
        }
    }

    deinit { close(fd) }

    /// What the tap may hand the guest, from the receive offloads the driver accepted: with
    /// none, the kernel completes checksums and segments before the frame reaches cprvmm.
    func setReceiveOffloads(checksum: Bool, tso4: Bool, tso6: Bool, ecn: Bool, ufo: Bool) -> String? {
        guard vnetHeader else { return nil }
        var flags: UInt32 = 0
        if checksum {
            flags |= CLINUX_TUN_F_CSUM
            if tso4 { flags |= CLINUX_TUN_F_TSO4 }
            if tso6 { flags |= CLINUX_TUN_F_TSO6 }
            if ecn && (tso4 || tso6) { flags |= CLINUX_TUN_F_TSO_ECN }
            if ufo { flags |= CLINUX_TUN_F_UFO }
        }
        var result = clinux_tap_set_offload(fd, flags)
        if result == -EINVAL && flags & CLINUX_TUN_F_UFO != 0 {
            // Kernels since 4.14 refuse UFO on taps: go on without it.
            result = clinux_tap_set_offload(fd, flags & ~CLINUX_TUN_F_UFO)
        }
        return result == 0 ? nil : "TUNSETOFFLOAD: \(SystemError.describe(-result))"
    }
}
