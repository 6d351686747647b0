import Shared

/// What QEMU's migrate-set-parameters and migrate-set-capabilities set for a pre-copy
/// migration, with QEMU's names, units and defaults where cprvmm has the same knob.
struct MigrationSettings {
    /// `downtime-limit`: the longest the guest may be paused for the last pass (ms).
    var downtimeLimitMs: UInt64 = 300
    /// `max-bandwidth`: bytes per second the stream may use; 0 = as fast as the link goes.
    /// (QEMU's default is 128 MiB/s; cprvmm does not slow a migration unless asked to.)
    var maxBandwidth: UInt64 = 0
    /// `cpu-throttle-initial`, `cpu-throttle-increment`, `max-cpu-throttle` (%): auto-converge.
    var throttleInitial: UInt64 = 20
    var throttleIncrement: UInt64 = 10
    var throttleMax: UInt64 = 99
    /// `x-max-passes`: switch over after this many RAM passes whatever the downtime would be
    /// (0 = never, as QEMU: a guest that dirties faster than the link then never finishes
    /// unless auto-converge slows it).
    var maxPasses: UInt64 = 0
    /// Capability `auto-converge`: slow the guest's vCPUs while it dirties RAM faster than it
    /// can be sent.
    var autoConverge = false
    /// Capability `events`: MIGRATION and MIGRATION_PASS events. On by default in cprvmm
    /// (QEMU: off), as MIGRATION was before this capability existed here.
    var events = true

    static let limits: [String: ClosedRange<UInt64>] = [
        "downtime-limit": 0...2_000_000,
        "max-bandwidth": 0...UInt64(Int64.max),
        "cpu-throttle-initial": 1...99,
        "cpu-throttle-increment": 1...99,
        "max-cpu-throttle": 1...99,
        "x-max-passes": 0...UInt64(Int64.max),
    ]

    /// Sets integer parameter `name` (one of `limits`, checked by the caller).
    mutating func set(_ name: String, _ value: UInt64) {
        switch name {
        case "downtime-limit": downtimeLimitMs = value
        case "max-bandwidth": maxBandwidth = value
        case "cpu-throttle-initial": throttleInitial = value
        case "cpu-throttle-increment": throttleIncrement = value
        case "max-cpu-throttle": throttleMax = value
        case "x-max-passes": maxPasses = value
        default: break
        }
    }

    var parameters: JSONObject {
        ["downtime-limit": .int(Int64(downtimeLimitMs)), "max-bandwidth": .int(Int64(maxBandwidth)),
         "cpu-throttle-initial": .int(Int64(throttleInitial)), "cpu-throttle-increment": .int(Int64(throttleIncrement)),
         "max-cpu-throttle": .int(Int64(throttleMax)), "x-max-passes": .int(Int64(maxPasses))]
    }

    static let capabilityNames = ["events", "auto-converge"]

    var capabilities: [JSONValue] {
        [.object(["capability": .string("events"), "state": .bool(events)]),
         .object(["capability": .string("auto-converge"), "state": .bool(autoConverge)])]
    }
}
