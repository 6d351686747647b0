import Glibc

#if CPRVMM_FUZZ
/// libFuzzer's driver (compiler-rt): it parses libFuzzer's options and calls back per input.
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

/// SwiftPM names an executable's entry point itself, so libFuzzer's own main is not used:
/// this one hands over to libFuzzer's driver.
@main
struct FuzzMain {
    static func main() {
        _ = target
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOneInput))
    }
}

private let target: FuzzTarget = {
    let name = getenv("CPRVMM_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        fputs("cprvmm-fuzz: set CPRVMM_FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))\n", stderr)
        exit(2)
    }
    return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    target.run(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}
#else
/// Without libFuzzer: `cprvmm-fuzz replay TARGET FILE...` runs each file through the target
/// once (the seed corpus as a regression test), `cprvmm-fuzz list` names the targets.
@main
struct FuzzReplay {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "list" {
            for target in FuzzTarget.allCases { print(target.rawValue) }
            return
        }
        if arguments.count == 2, arguments[0] == "seed-cpr-state" {
            // A CPR state as a live update writes it, for the seed corpus.
            let bytes = FuzzTarget.sampleCPRState()
            guard let file = fopen(arguments[1], "wb"), fwrite(bytes, 1, bytes.count, file) == bytes.count, fclose(file) == 0 else { exit(1) }
            return
        }
        guard arguments.count >= 2, arguments[0] == "replay", let target = FuzzTarget(rawValue: arguments[1]) else {
            fputs("usage: cprvmm-fuzz list | replay TARGET FILE... | seed-cpr-state FILE\n", stderr)
            exit(2)
        }
        var count = 0
        for path in arguments.dropFirst(2) {
            guard let file = fopen(path, "rb") else {
                fputs("cprvmm-fuzz: cannot open \(path)\n", stderr)
                exit(1)
            }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = fread(&chunk, 1, chunk.count, file)
                if n <= 0 { break }
                bytes += chunk[..<n]
            }
            fclose(file)
            target.run(bytes)
            count += 1
        }
        print("cprvmm-fuzz: \(target.rawValue): \(count) inputs replayed")
    }
}
#endif
