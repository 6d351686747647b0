import Shared

/// cprctl(1), made from the help text (Usage.text) as cprvmm(1) is from cprvmm's, so the
/// manual and `cprctl --help` always list the same commands; `man/cprctl.1` is this page,
/// and a test checks it is up to date (regenerate with scripts/make-man).
enum ManPage {
    static var cprctl: String {
        var lines: [String] = [
            #".TH CPRCTL 1 "" "cprvmm" "User Commands""#,
            ".SH NAME",
            #"cprctl \- control running cprvmm virtual machines: status, live update, migration, console"#,
            ".SH SYNOPSIS",
            #".B cprctl"#,
            #"\fIcommand\fR [\fIoptions\fR]"#,
        ]
        let (description, rest) = ManPageFromHelp.description(of: ManPageFromHelp.lines(of: Usage.text))
        lines += [".SH DESCRIPTION", ManPageFromHelp.escape(description)]
        // Its sections (Commands, Options, Choosing a VM, Exit status) are the page's sections.
        lines += ManPageFromHelp.sections(rest, isItem: isItem, heading: { [".SH " + ManPageFromHelp.escape($0.uppercased())] })
        lines += [
            ".SH FILES",
            ".TP",
            ManPageFromHelp.escape("\(RuntimeDirectory.defaultBase)/NAME/qmp.sock, \(RuntimeDirectory.defaultBase)/NAME/console.sock"),
            ManPageFromHelp.escape(
                "The QMP and serial console sockets of the VM NAME, where cprvmm@.service(8) and its example configuration put them; $\(RuntimeDirectory.environmentVariable), if set, replaces \(RuntimeDirectory.defaultBase)."),
            ".TP",
            ManPageFromHelp.escape("/usr/share/bash-completion/completions/cprctl"),
            ManPageFromHelp.escape("Where the script of cprctl completion bash goes."),
            ".SH SEE ALSO",
            #".BR cprvmm (1),"#,
            #".BR cprvmm@.service (8),"#,
            #".BR systemctl (1)"#,
        ]
        return lines.joined(separator: "\n") + "\n"
    }

    /// Commands and options are indented by two spaces ("  status ...", "  -h, --help"), as
    /// is other text under a heading: an item starts with '-' or a command's name.
    static func isItem(_ line: String) -> Bool {
        guard line.hasPrefix("  "), !line.hasPrefix("   ") else { return false }
        let word = line.dropFirst(2).prefix { $0 != " " }
        return word.hasPrefix("-") || CommandCatalog.commands.contains { $0.name == word }
    }
}
