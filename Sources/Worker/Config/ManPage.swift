import Shared

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
        let (description, rest) = ManPageFromHelp.description(of: ManPageFromHelp.lines(of: Usage.text))
        lines += [".SH DESCRIPTION", ManPageFromHelp.escape(description)]
        lines += [
            ".PP",
            "The running VMM pauses the VM, saves CPU and device state, execs a new cprvmm binary in the same process (same PID) and resumes the guest from RAM kept in memfds: a live update, QEMU's cpr-exec migration mode. Under systemd, systemctl reload is a live update (cprvmm@.service).",
            ".SH OPTIONS",
        ]
        lines += ManPageFromHelp.sections(rest, isItem: { $0.hasPrefix("-") }, heading: { [".SS " + ManPageFromHelp.escape($0)] })
        lines += [
            ".SH EXIT STATUS",
            "0 when the VM ends in order (quit, SIGINT, SIGTERM, the guest powering off); 1 on a wrong command line, a failed start or a guest failure (triple fault, emulation failure, a vCPU halted for good); (V << 1) | 1 when the guest writes V to an isa-debug-exit port.",
            ".SH FILES",
            ManPageFromHelp.escape("/run/cprvmm/NAME/ holds the QMP, HMP and console sockets of the VM NAME by convention (CPRVMM_RUNTIME_DIR changes the base); cprctl(1) finds VMs there."),
            ".SH SEE ALSO",
            #".BR cprctl (1),"#,
            #".BR cprvmm@.service (8),"#,
            #".BR qemu-system-x86_64 (1),"#,
            #".BR systemctl (1)"#,
        ]
        return lines.joined(separator: "\n") + "\n"
    }
}
