import Glibc
import Shared
import Systemd
import Worker

// Stage 1 of the cprvmm process: owns what must survive a live update -- the PID, the
// signal mask across execve (ImageExec), and the conversation with systemd -- and runs the
// Worker (the VMM) in-process.
_ = ProcessClock.imageStarted  // the image's start time, taken before anything else runs
_ = ProcessClock.imageStartedMonotonic
setvbuf(stdout, nil, _IOLBF, 0)
Worker.execImage = ImageExec.perform
// Under systemd (NOTIFY_SOCKET set): READY/RELOADING/STATUS/WATCHDOG/STOPPING and the fd
// store. libsystemd itself is loaded on the first message, after the guest runs.
Worker.serviceManager = SystemdNotifier.fromEnvironment { problem in
    var line = "cprvmm: systemd: " + problem + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
let status = Worker.main(arguments: Array(CommandLine.arguments.dropFirst()))
fflush(nil)
exit(status)
