/// cprvmm(1), made from the help text (Usage.text), so the manual and `cprvmm --help` always
/// list the same options; `man/cprvmm.1` is this page, and a test checks it is up to date
/// (regenerate with scripts/make-man).
public enum ManPage {
    public static var cprvmm: String {
        var lines: [String] = [
            #".TH CPRVMM 1 "" "cprvmm" "User Commands""#,
            ".SH NAME",
            #"cprvmm \- a KVM virtual machine monitor whose VMs are live-updated in place"#,
            ".SH SYNOPSIS",
            #".B cprvmm"#,
            #"[\fIoptions\fR]"#,
        ]
        let text = Usage.text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        // The paragraph after the usage line is the description; sections follow.
        var index = 1
        while index < text.count, text[index].isEmpty { index += 1 }
        var description: [String] = []
        while index < text.count, !text[index].isEmpty {
            description.append(text[index])
            index += 1
        }
        lines += [".SH DESCRIPTION", escape(description.joined(separator: " "))]
        lines += [
            ".PP",
            "The running VMM pauses the VM, saves CPU and device state, execs a new cprvmm binary in the same process (same PID) and resumes the guest from RAM kept in memfds: a live update, QEMU's cpr-exec migration mode. Under systemd, systemctl reload is a live update (cprvmm@.service).",
            ".SH OPTIONS",
        ]
        var pendingBody: [String] = []
        func flush() {
            if !pendingBody.isEmpty { lines.append(escape(pendingBody.joined(separator: " "))) }
            pendingBody = []
        }
        for line in text[index...] {
            if line.isEmpty { continue }
            if line.hasSuffix(":"), !line.hasPrefix(" "), !line.hasPrefix("-") {
                flush()
                lines += [".SS " + escape(String(line.dropLast()))]
            } else if line.hasPrefix("-") {
                flush()
                // "-m [size=]megs  set guest RAM ...": the option, then its text on the same line.
                let (option, rest) = splitOption(line)
                lines += [".TP", #".B "# + escape(option)]
                if !rest.isEmpty { pendingBody.append(rest) }
            } else {
                let trimmed = line.drop { $0 == " " }
                // A continuation of a long option line ("       [,cache=...]") belongs to the option.
                if trimmed.hasPrefix("["), pendingBody.isEmpty, let last = lines.last, last.hasPrefix(".B ") {
                    lines[lines.count - 1] = last + escape(String(trimmed))
                } else if let word = trimmed.split(separator: " ").first, word.hasSuffix(":"), !pendingBody.isEmpty {
                    // A sub-item ("accel=kvm: ...", "stdio: ...") starts a line of its own.
                    flush()
                    lines.append(".br")
                    pendingBody.append(String(trimmed))
                } else {
                    pendingBody.append(String(trimmed))
                }
            }
        }
        flush()
        lines += [
            ".SH EXIT STATUS",
            "0 when the VM ends in order (quit, SIGINT, SIGTERM, the guest powering off); 1 on a wrong command line, a failed start or a guest failure (triple fault, emulation failure, a vCPU halted for good); (V << 1) | 1 when the guest writes V to an isa-debug-exit port.",
            ".SH FILES",
            escape("/run/cprvmm/NAME/ holds the QMP, HMP and console sockets of the VM NAME by convention (CPRVMM_RUNTIME_DIR changes the base); cprctl(1) finds VMs there."),
            ".SH SEE ALSO",
            #".BR cprctl (1),"#,
            #".BR qemu-system-x86_64 (1),"#,
            #".BR systemctl (1)"#,
        ]
        return lines.joined(separator: "\n") + "\n"
    }

    /// The option part of a help line ("-m [size=]megs") and the text after the gap of two
    /// or more spaces, if any.
    static func splitOption(_ line: String) -> (String, String) {
        let characters = Array(line)
        guard let gap = characters.indices.first(where: { $0 + 1 < characters.count && characters[$0] == " " && characters[$0 + 1] == " " }) else {
            return (line, "")
        }
        return (String(characters[..<gap]), String(characters[gap...].drop { $0 == " " }))
    }

    /// roff: backslashes doubled, '-' as \-, and no line starting with a control character.
    static func escape(_ text: String) -> String {
        var escaped = text.replacingBackslashes().map { $0 == "-" ? "\\-" : String($0) }.joined()
        if escaped.hasPrefix(".") || escaped.hasPrefix("'") { escaped = "\\&" + escaped }
        return escaped
    }
}

extension String {
    fileprivate func replacingBackslashes() -> String {
        map { $0 == "\\" ? "\\e" : String($0) }.joined()
    }
}
