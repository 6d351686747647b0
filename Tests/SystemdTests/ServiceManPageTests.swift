import Foundation
import Testing

/// man/cprvmm@.service.8 is written by hand: these keep it in step with the unit it
/// documents, and all the pages free of roff warnings.
@Suite struct ServiceManPageTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let groff = "/usr/bin/groff"

    @Test("cprvmm@.service(8) names every setting of units/cprvmm@.service")
    func everySettingDocumented() throws {
        let unit = try String(contentsOf: Self.root.appendingPathComponent("units/cprvmm@.service"), encoding: .utf8)
        let page = try String(contentsOf: Self.root.appendingPathComponent("man/cprvmm@.service.8"), encoding: .utf8)
            .replacingOccurrences(of: "\\-", with: "-")
        // What only describes the unit to systemd (its text, ordering, install target) is left out.
        let descriptive: Set = ["Description", "Documentation", "After", "WantedBy"]
        let settings = unit.split(separator: "\n").compactMap { line -> String? in
            guard let first = line.first, first.isLetter, let equals = line.firstIndex(of: "=") else { return nil }
            return String(line[..<equals])
        }
        #expect(settings.count > 30, "read \(settings.count) settings from the unit")
        for setting in settings where !descriptive.contains(setting) {
            #expect(page.contains(setting), "the page does not mention \(setting)=")
        }
        for unusable in ["PrivateDevices=", "PrivateNetwork=", "DynamicUser=", "CPRVMM_RECOVERY_FALLBACK", "notify-reload"] {
            #expect(page.contains(unusable), "the page does not mention \(unusable)")
        }
    }

    @Test(
        "the manual pages render without roff warnings",
        .enabled(if: FileManager.default.isExecutableFile(atPath: groff), "needs \(groff) (apt-get install groff-base); skipped"),
        arguments: ["man/cprvmm@.service.8", "man/cprvmm.1", "man/cprctl.1"])
    func rendersCleanly(page: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.groff)
        process.arguments = ["-man", "-ww", "-z", Self.root.appendingPathComponent(page).path]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0 && text.isEmpty, "\(page): \(text)")
    }
}
