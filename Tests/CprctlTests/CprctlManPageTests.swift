import Foundation
import Testing

@testable import cprctl

@Suite struct CprctlManPageTests {
    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("man/cprctl.1").path

    @Test("man/cprctl.1 is the page made from the help text (scripts/make-man regenerates it)")
    func upToDate() throws {
        if ProcessInfo.processInfo.environment["CPRVMM_UPDATE_MAN"] == "1" {
            try ManPage.cprctl.write(toFile: Self.path, atomically: true, encoding: .utf8)
            print("wrote \(Self.path)")
        }
        let committed = try String(contentsOfFile: Self.path, encoding: .utf8)
        #expect(committed == ManPage.cprctl, "man/cprctl.1 is stale: run scripts/make-man")
    }

    @Test("cprctl --help and the man page list the same commands, and the page its options")
    func sameCommands() throws {
        // The page as made now (upToDate holds the committed one to it, and may be rewriting it).
        let page = ManPage.cprctl.split(separator: "\n").map(String.init)
        // The tagged paragraphs of the COMMANDS section, named by their first word.
        let start = try #require(page.firstIndex(of: ".SH COMMANDS"))
        let section = page[(start + 1)...].prefix { !$0.hasPrefix(".SH ") }
        let manual = section.filter { $0.hasPrefix(".B ") }.map { String($0.dropFirst(3).prefix { $0 != " " }) }
        let help = HelpCommands.names(in: Usage.text)
        #expect(manual == help, "--help: \(help); the manual: \(manual)")
        for command in ["status", "update", "migrate", "list", "stop", "cont", "console", "completion", "help"] {
            #expect(manual.contains(command), "the manual lacks \(command)")
        }
        // stop and cont share their text: the second is a further tag (.TQ), not an empty item.
        let stop = try #require(section.firstIndex { $0.hasPrefix(".B stop ") })
        #expect(section[stop + 1] == ".TQ" && section[stop + 2].hasPrefix(".B cont "))
        #expect(page.contains(#".B \-h, \-\-help"#) && page.contains(#".B \-\-version"#))
        #expect(page.contains(".SH EXIT STATUS"))
    }
}
