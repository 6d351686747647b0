import Shared

enum Usage {
    static var text: String {
        """
        Usage: cprctl COMMAND [OPTIONS]

        Controls running cprvmm VMs through their QMP sockets and attaches to their serial
        consoles.

        Commands:
          status [NAME | --socket PATH] [--json] [--timeout SECONDS]
                              Show what a VM is doing: state, process, version and build id,
                              when the running image started, VM uptime, live updates,
                              the outgoing migration under way or the last one, vCPUs, RAM
                              blocks and sockets.
                              --json prints the VMM's x-query-cprvmm reply as JSON (the
                              migration's query-migrate reply under "migration").
                              --timeout bounds each wait for the VM (default 5 s).
          update [NAME | --socket PATH | --all [--keep-going]] [--binary PATH]
                 [--no-bridges] [--no-probe] [--timeout SECONDS] [--json] [-- ARGS...]
                              Live-update the VM (cpr-exec): exec the binary again in the
                              same process with the current command line (or ARGS), guest
                              RAM kept in place; waits for the outcome (default 60 s).
                              The program is looked up again, so an upgraded package is
                              picked up; --binary names another one. Exit 0 when the new
                              image runs the guest, 1 with the reason on a refusal, a
                              failed exec or a rollback (the VM then runs on the old one).
                              Before the guest is paused, the binary is run with
                              --cpr-probe and must answer that it reads this VM's state;
                              --no-probe skips that, for a binary older than the probe.
                              --no-bridges keeps the guest paused across the exec, for a
                              binary older than vCPU bridges (it would roll back).
                              --all updates every VM in <dir>, one after another, and stops
                              at the first that fails unless --keep-going. --json prints
                              the update's record (versions, pause, phases) as JSON, a
                              line per VM.
          migrate [NAME | --socket PATH] URI [--downtime-limit MS] [--max-bandwidth RATE]
                  [--max-passes N] [--auto-converge] [--json] [--timeout SECONDS]
                              Live-migrate the VM (mode normal) to URI, tcp:HOST:PORT or
                              unix:PATH where a cprvmm started with -incoming URI waits, or
                              exec:COMMAND. The guest runs on while its RAM is sent, pass
                              after pass, until the rest fits the downtime limit (ms, 300
                              by default); then it pauses here and the target runs it.
                              --max-bandwidth caps the stream (bytes per second, suffixes
                              K, M, G: powers of 1024; 0 = no cap); --max-passes switches
                              over after N passes whatever the downtime; --auto-converge
                              slows the guest's vCPUs while it dirties RAM faster than it
                              can be sent. They stay set on the VM, as QEMU's parameters.
                              cprctl follows the migration until it ends, with a progress
                              line on a terminal, else a line per pass (at most one a
                              second). Exit 0 when the target runs the guest (this VM is
                              left in state postmigrate), 1 with the reason when the VMM
                              refuses (nothing changed) or the migration fails (the VM
                              runs on here). Ctrl-C cancels the migration and waits until
                              it ended (exit 130; Ctrl-C again stops waiting). --json
                              prints the final query-migrate reply. --timeout bounds each
                              wait for the VM's answer (default 5 s), not the migration.
          list [--json]       Every VM in <dir>, a line each: name, state, PID, version,
                              update generation and the guest pause of its last update
                              (a VM that does not answer is listed with the reason).
          stop [NAME | --socket PATH] [--timeout SECONDS] [--json]
          cont [NAME | --socket PATH] [--timeout SECONDS] [--json]
                              Pause the guest's vCPUs and devices, or let them run again
                              (QMP stop and cont); prints the run state afterwards (--json:
                              as {"name": ..., "status": ...}).
          console [NAME | --socket PATH]
                              Attach this terminal to the VM's serial console, the socket
                              <dir>/NAME/console.sock (--socket gives the console socket's
                              path), which cprvmm serves when started with
                              -serial unix:PATH,server=on,wait=off. Ctrl-] leaves (exit 0).
                              On a terminal every key goes to the guest as typed, Ctrl-C
                              too (raw mode, restored however cprctl ends). Without one,
                              stdin goes to the guest and its output to stdout until the
                              VM closes the console (then exit 0) or a Ctrl-] byte comes;
                              at the end of stdin cprctl shuts down its sending side and
                              prints on, but cprvmm, like QEMU, then closes the console.
                              cprvmm serves one console client at a time and disconnects
                              any other at once (cprctl then says so and exits 1); the
                              client stays connected across a live update.
          completion bash     Print a bash completion script for cprctl: commands, their
                              options and the VM names in <dir>. Install it as
                              /usr/share/bash-completion/completions/cprctl, or source it.
          help                Show this help.

        Options:
          -h, --help          Show this help and exit.
          --version           Show cprctl's version and build id and exit.

        Choosing a VM:
          NAME is the VM's -name: its QMP socket is <dir>/NAME/qmp.sock, where <dir> is
          $\(RuntimeDirectory.environmentVariable) if set, else \(RuntimeDirectory.defaultBase).
          Without NAME or --socket, cprctl uses the only VM found in <dir>.

        Exit status:
          0 on success, 1 on any error (including a wrong command line), with a one-line
          message on stderr starting with "cprctl: ".
        """
    }

    static var versionLine: String { "cprctl version \(BuildInfo.version) (build id \(BuildInfo.buildID))" }
}
