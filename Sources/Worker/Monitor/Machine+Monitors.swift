import Shared

/// Starts the monitors the command line asked for (-qmp, -monitor), taking over the listening
/// sockets a previous image handed on in a live update.
extension Machine {
    func startMonitors() throws {
        for path in config.qmpSockets {
            monitors.append(try QMPServer(path: path, machine: self, inherited: cprState?.fd(named: "qmp:" + path)))
        }
        for monitor in config.monitors {
            var inherited: Int32?
            if case .unixServer(let path) = monitor { inherited = cprState?.fd(named: "hmp:" + path) }
            monitors.append(try HMPServer(monitor, machine: self, inherited: inherited))
        }
    }

    /// Listening sockets to hand to the next image, named as `startMonitors` looks them up.
    var monitorSocketsForHandover: [CPRState.InheritedFD] {
        monitors.compactMap { monitor in
            if let qmp = monitor as? QMPServer, let fd = qmp.listenFD { return CPRState.InheritedFD(name: "qmp:" + qmp.path, fd: fd) }
            if let hmp = monitor as? HMPServer, let fd = hmp.listenFD, let path = hmp.path { return CPRState.InheritedFD(name: "hmp:" + path, fd: fd) }
            return nil
        }
    }
}
