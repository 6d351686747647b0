import CGuest
import Shared

/// What the built-in guest reports about itself in its status page (GUEST_STATUS), read
/// from guest RAM without disturbing it: the host's view of the heartbeat, the ticks, the
/// memory checks, the disk workload, the network responder and the dirtying workload.
extension Machine {
    var builtinGuestStatus: JSONObject? {
        guard config.usesBuiltinGuest, runState != .inmigrate else { return nil }  // RAM not loaded yet
        func field(_ offset: Int32) -> JSONValue {
            .int(Int64(bitPattern: (try? memory.guest.load(UInt64.self, at: GuestAddress(UInt64(GUEST_STATUS) + UInt64(offset)))) ?? 0))
        }
        var status: JSONObject = [
            "heartbeat": field(ST_HEARTBEAT), "ticks": field(ST_TICKS), "passes": field(ST_PASSES),
            "corruptions": field(ST_CORRUPTIONS),
        ]
        if !disks.isEmpty {
            status["disk-ops"] = field(ST_DISK_OPS)
            status["disk-worst-us"] = field(ST_DISK_WORST_US)
            status["disk-errors"] = field(ST_DISK_ERRORS)
            status["disk-interrupts"] = .int(Int64(bitPattern: (try? memory.guest.load(UInt64.self, at: GuestAddress(UInt64(GUEST_DISK_INTERRUPTS)))) ?? 0))
        }
        func shared(_ address: Int32) -> JSONValue {
            .int(Int64(bitPattern: (try? memory.guest.load(UInt64.self, at: GuestAddress(UInt64(address)))) ?? 0))
        }
        if !nics.isEmpty {
            status["net-in"] = shared(GUEST_NET_FRAMES_IN)
            status["net-out"] = shared(GUEST_NET_FRAMES_OUT)
            status["net-malformed"] = shared(GUEST_NET_MALFORMED)
            status["net-tx-dropped"] = shared(GUEST_NET_TX_DROPPED)
        }
        // From the boot information in guest RAM rather than this image's dirty=: it is what
        // the running guest does, whatever command line a live update or migration target got.
        if shared(GUEST_BOOT_INFO + BI_DIRTY_RATE) != .int(0) {
            status["dirty-pages"] = shared(GUEST_DIRTY_PAGES)
            status["dirty-sweeps"] = shared(GUEST_DIRTY_SWEEPS)
        }
        return status
    }
}
