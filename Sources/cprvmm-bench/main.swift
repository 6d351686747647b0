import Glibc
import Worker

// In-process benchmark of the pause API the live update stands on: how long from asking
// every vCPU to stop until all are outside KVM_RUN, with the built-in guest spinning at CPL3.
// Prints figures only; `bench/run` calls it and sets them beside the C reference VMM's.
//
// usage: cprvmm-bench [iterations] [smp] [ram-MiB]

let arguments = CommandLine.arguments
let iterations = arguments.count > 1 ? Int(arguments[1]) ?? 200 : 200
let smp = arguments.count > 2 ? Int(arguments[2]) ?? 1 : 1
let ramMiB = arguments.count > 3 ? UInt64(arguments[3]) ?? 256 : 256

var config = MachineConfig()
config.ramSize = ramMiB << 20
config.smp = smp
config.memfdAlloc = true
config.serial = .null
config.builtinGuest.mode = .spin
config.builtinGuest.fillPercent = 10

Worker.blockTerminationSignals()
let machine: Machine
do {
    machine = try Machine(config: config)
} catch {
    fputs("cprvmm-bench: \(error)\n", stderr)
    exit(1)
}

// The machine's event loop owns the thread that calls run(); give it its own.
var loopThread = pthread_t()
pthread_create(&loopThread, nil, { _ in
    _ = try? machine.run()
    return nil
}, nil)

usleep(1_000_000)  // let the guest fill its pattern and settle into its loop
var samples: [UInt64] = []
for _ in 0..<iterations {
    samples.append(machine.pause())
    machine.resume()
    usleep(2_000)  // let the vCPUs get back into the guest
}
machine.requestExit(status: 0, reason: nil)
pthread_join(loopThread, nil)

samples.sort()
func microseconds(_ ns: UInt64) -> String {
    let us = Double(ns) / 1000
    return String(Int(us * 10) / 10) + "." + String(Int(us * 10) % 10)
}
let p50 = samples[samples.count / 2]
let p90 = samples[samples.count * 9 / 10]
print("pause-all-vcpus smp=\(smp) ram=\(ramMiB)MiB n=\(samples.count): p50 \(microseconds(p50)) us  p90 \(microseconds(p90)) us  max \(microseconds(samples.last!)) us")
