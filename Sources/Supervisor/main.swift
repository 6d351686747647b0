import Glibc
import Shared
import Worker

// Stage 1 of the cprvmm process. Today it only hands over to the Worker; it is kept thin
// because later it owns what must survive a live update (PID, signals, sd_notify, execve).
_ = ProcessClock.imageStarted  // the image's start time, taken before anything else runs
_ = ProcessClock.imageStartedMonotonic
setvbuf(stdout, nil, _IOLBF, 0)
Worker.execImage = ImageExec.perform
let status = Worker.main(arguments: Array(CommandLine.arguments.dropFirst()))
fflush(nil)
exit(status)
