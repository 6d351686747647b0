import CLinux
import Glibc
import Shared
import Worker

/// Replaces the process image for a live update, keeping the PID and exactly the fds asked
/// for. Returns the reason if execve failed; the caller then resumes the VM on this image.
enum ImageExec {
    static func perform(_ request: ExecRequest) -> String {
        guard let program = request.arguments.first else { return "empty command line" }
        let path: String
        if let fd = request.executableFD {
            path = "\(program) (the previous image, fd \(fd))"
        } else {
            guard let found = resolve(program) else { return "\(program): no such file or directory (not found in PATH)" }
            path = found
        }
        // Only the kept fds lose close-on-exec, and only for this exec attempt.
        for fd in request.keepFDs { _ = fcntl(fd, F_SETFD, 0) }
        defer { for fd in request.keepFDs { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) } }

        var environment = currentEnvironment()
        for (name, value) in request.environment {
            environment.removeAll { $0.hasPrefix(name + "=") }
            if let value { environment.append("\(name)=\(value)") }
        }

        // The new image installs its handlers and unblocks what it handles itself. Until then
        // keep termination and the kick signal blocked: pending, not fatal (a caught handler
        // is reset to the default at exec, and SIGHUP's default would kill the VM), and
        // SIGCHLD pending for the new image's reaping of the tasks this update leaves.
        var mask = sigset_t()
        var previous = sigset_t()
        sigemptyset(&mask)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1] { sigaddset(&mask, signal) }
        pthread_sigmask(SIG_SETMASK, &mask, &previous)
        fflush(nil)  // buffered output would be lost with the old image
        if getenv("CPRVMM_TRACE_STARTUP") != nil {
            // The start-up trace of the new image splits the exec from the work before it.
            environment.removeAll { $0.hasPrefix("CPRVMM_TRACE_EXEC_NS=") }
            environment.append("CPRVMM_TRACE_EXEC_NS=\(ProcessClock.monotonicNanoseconds())")
        }

        let code = withCStrings(request.arguments) { argv in
            withCStrings(environment) { envp in
                if let fd = request.executableFD {
                    fexecve(fd, argv, envp)
                } else {
                    execve(path, argv, envp)
                }
                return errno
            }
        }
        pthread_sigmask(SIG_SETMASK, &previous, nil)
        return "execve \(path) failed: \(String(cString: strerror(code)).lowercased())"
    }

    /// The program's path: as given if it has a slash, else the first executable in PATH.
    static func resolve(_ program: String) -> String? {
        if program.contains("/") { return program }
        let search = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in search.split(separator: ":") {
            let candidate = "\(directory)/\(program)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    private static func currentEnvironment() -> [String] {
        var result: [String] = []
        var pointer = environ
        while let entry = pointer.pointee {
            result.append(String(cString: entry))
            pointer += 1
        }
        return result
    }

    private static func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
        let copies = strings.map { strdup($0) } + [nil]
        defer { for copy in copies { free(copy) } }
        return copies.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
