/// Starts the monitors the command line asked for (-qmp, -monitor).
extension Machine {
    func startMonitors() throws {
        for path in config.qmpSockets {
            monitors.append(try QMPServer(path: path, machine: self))
        }
        for monitor in config.monitors {
            monitors.append(try HMPServer(monitor, machine: self))
        }
    }
}
