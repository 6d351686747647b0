import Foundation
import Testing

@testable import Worker

@Suite struct ManPageTests {
    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("man/cprvmm.1").path

    @Test("man/cprvmm.1 is the page made from the help text (scripts/make-man regenerates it)")
    func upToDate() throws {
        if ProcessInfo.processInfo.environment["CPRVMM_UPDATE_MAN"] == "1" {
            try ManPage.cprvmm.write(toFile: Self.path, atomically: true, encoding: .utf8)
            print("wrote \(Self.path)")
        }
        let committed = try String(contentsOfFile: Self.path, encoding: .utf8)
        #expect(committed == ManPage.cprvmm, "man/cprvmm.1 is stale: run scripts/make-man")
    }

    @Test("cprvmm --help and the man page list the same options")
    func sameOptions() throws {
        let help = Set(Usage.text.split(separator: "\n").filter { $0.hasPrefix("-") }.map { $0.split(separator: " ")[0] }.map(String.init))
        let page = try String(contentsOfFile: Self.path, encoding: .utf8)
        let manual = Set(page.split(separator: "\n").filter { $0.hasPrefix(".B \\-") }.map {
            String($0.dropFirst(3).split(separator: " ")[0]).replacingOccurrences(of: "\\-", with: "-")
        })
        #expect(help == manual, "only in --help: \(help.subtracting(manual).sorted()); only in the manual: \(manual.subtracting(help).sorted())")
        for option in ["-qmp", "-monitor", "-S", "-incoming", "-drive", "-device", "-bios"] {
            #expect(help.contains(option), "--help lacks \(option)")
        }
    }
}
