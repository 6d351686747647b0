// swift-tools-version:6.0
import Foundation
import PackageDescription

// CPRVMM_VERSION=X at build time overrides the version the binaries report. The tests build
// a second cprvmm this way, so a live update goes between two builds with different versions.
let versionOverride: [CSetting] = ProcessInfo.processInfo.environment["CPRVMM_VERSION"].map {
    [.define("CPRVMM_VERSION", to: "\"\($0)\"")]
} ?? []

// No third-party dependencies: every dependency lengthens the clean build and, worse,
// the start-up of every new image during a live update (see docs/platform.md).
let package = Package(
    name: "cprvmm",
    products: [
        .executable(name: "cprvmm", targets: ["Supervisor"]),
        .executable(name: "cprctl", targets: ["cprctl"]),
    ],
    targets: [
        // C shims for what Swift cannot import: ioctl request numbers, kernel structs.
        .target(name: "CKVM"),
        // The tasks a live update clones into the old image's address space (vCPU bridges,
        // teardown holders): core runtime with its own rules (clone_task.h).
        .target(name: "CBridge", dependencies: ["CKVM"]),
        // C shims for libc functions hidden behind _GNU_SOURCE (memfd_create, ...).
        .target(name: "CLinux", cSettings: versionOverride),
        // Guest programs, assembled from source by the normal build.
        .target(name: "CGuest"),
        // libsystemd's sd-daemon API, loaded on first use (see csystemd.h for why not linked).
        .target(name: "CSystemd", linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "Shared", dependencies: ["CLinux"]),
        .target(
            name: "Worker",
            dependencies: ["CKVM", "CBridge", "CLinux", "CGuest", "Shared"]
        ),
        // The Supervisor's conversation with systemd (sd_notify, the fd store, the watchdog).
        .target(name: "Systemd", dependencies: ["CSystemd", "Shared", "Worker"]),
        .executableTarget(
            name: "Supervisor",
            dependencies: ["Worker", "Shared", "CLinux", "Systemd"]
        ),
        // The operator CLI: speaks QMP to a running cprvmm.
        .executableTarget(name: "cprctl", dependencies: ["Shared", "CLinux"]),
        // Fuzz targets for what the VMM takes from outside (scripts/fuzz builds them with
        // libFuzzer; a plain build replays the seed corpus).
        .executableTarget(name: "cprvmm-fuzz", dependencies: ["Worker", "Shared", "CLinux"]),
        // In-process benchmark of the vCPU pause API (bench/run calls it).
        .executableTarget(name: "cprvmm-bench", dependencies: ["Worker"]),
        .testTarget(name: "WorkerTests", dependencies: ["Worker", "Shared"]),
        .testTarget(name: "SharedTests", dependencies: ["Shared"]),
        .testTarget(name: "SystemdTests", dependencies: ["Systemd", "Worker", "Shared", "CLinux"]),
        .testTarget(name: "CprctlTests", dependencies: ["cprctl", "Shared"]),
        .testTarget(name: "EndToEndTests", dependencies: ["Shared"]),
    ],
    swiftLanguageModes: [.v5]
)
