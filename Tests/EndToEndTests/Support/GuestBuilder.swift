import Foundation
import Testing

/// Builds the small test guests in Tests/EndToEndTests/Guests from source with the Swift
/// toolchain's clang and lld (no prebuilt binaries are committed).
enum GuestBuilder {
    static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Guests")

    static let toolDirectory: String = {
        // The clang next to the running toolchain's swift; PATH as a fallback.
        for candidate in ["/opt/swift/usr/bin", "/usr/bin"] where FileManager.default.isExecutableFile(atPath: candidate + "/clang") {
            return candidate
        }
        return "/usr/bin"
    }()

    static func run(_ tool: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw GuestBuildError(message: "\(tool) \(arguments.joined(separator: " ")) failed: \(text)")
        }
    }

    struct GuestBuildError: Error, CustomStringConvertible { let message: String; var description: String { message } }

    static func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cprvmm-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// An ELF64 executable linked at 16 MiB, for `-kernel`.
    static func kernel(_ name: String) throws -> String {
        let dir = try temporaryDirectory()
        let output = dir.appendingPathComponent(name + ".elf").path
        try run(toolDirectory + "/clang", [
            "-nostdlib", "-static", "-fuse-ld=lld", "-Wl,--build-id=none", "-Wl,--image-base=0x1000000", "-Wl,-e,_start",
            sources.appendingPathComponent(name + ".S").path, "-o", output,
        ])
        return output
    }

    /// A 512-byte boot sector linked at 0000:7C00, where a PC BIOS loads it.
    static func bootSector(_ name: String) throws -> [UInt8] {
        let dir = try temporaryDirectory()
        let object = dir.appendingPathComponent(name + ".o").path
        let image = dir.appendingPathComponent(name + ".bin").path
        try run(toolDirectory + "/clang", ["-c", sources.appendingPathComponent(name + ".S").path, "-o", object])
        try run(toolDirectory + "/ld.lld", ["--oformat", "binary", "--image-base=0", "-Ttext=0x7c00", object, "-o", image])
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: image)))
        guard bytes.count == 512, bytes[510] == 0x55, bytes[511] == 0xAA else {
            throw GuestBuildError(message: "\(name): a boot sector is 512 bytes ending in 55 aa, not \(bytes.count) bytes")
        }
        return bytes
    }

    /// A raw 64 KiB real-mode firmware image, for `-bios`.
    static func firmware(_ name: String) throws -> String {
        let dir = try temporaryDirectory()
        let object = dir.appendingPathComponent(name + ".o").path
        let image = dir.appendingPathComponent(name + ".bin").path
        try run(toolDirectory + "/clang", ["-c", sources.appendingPathComponent(name + ".S").path, "-o", object])
        // Linked at 0 as a flat binary: offsets in the image are offsets in segment F000.
        try run(toolDirectory + "/ld.lld", ["--oformat", "binary", "--image-base=0", "-Ttext=0", object, "-o", image])
        let size = try FileManager.default.attributesOfItem(atPath: image)[.size] as! Int
        guard size == 65536 else { throw GuestBuildError(message: "\(name): firmware image is \(size) bytes, expected 65536") }
        return image
    }
}
