import Foundation
import Testing

/// The code of Sources/CBridge runs in CLONE_VM tasks that share another thread's TLS
/// (clone_task.h): it must call nothing in libc but what the cloning thread itself calls
/// (clone, mmap, munmap, errno). A memcpy through the PLT, or a memset the compiler emits for
/// an aggregate initializer, would run glibc's lazy binding on that other thread's TLS.
@Suite struct CloneTaskRulesTests {
    static let allowed: Set<String> = ["clone", "mmap", "munmap", "__errno_location"]

    @Test("the bridge and teardown-holder objects reference no libc symbol beyond clone/mmap/munmap/errno, at -O0 and -O2",
          arguments: ["bridge.c", "teardown_holder.c"], ["-O0", "-O2"])
    func noLibcCallsInCloneTasks(source: String, optimization: String) throws {
        let root = GuestBuilder.sources.deletingLastPathComponent().deletingLastPathComponent()
        let directory = try GuestBuilder.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let object = directory.appendingPathComponent(source + ".o").path
        try GuestBuilder.run(GuestBuilder.toolDirectory + "/clang", [
            optimization, "-c", "-I", root.appendingPathComponent("Sources/CBridge/include").path,
            "-I", root.appendingPathComponent("Sources/CKVM/include").path,
            root.appendingPathComponent("Sources/CBridge/" + source).path, "-o", object,
        ])
        let nm = GuestBuilder.toolDirectory + "/llvm-nm"
        try #require(FileManager.default.isExecutableFile(atPath: nm), "llvm-nm is not next to clang in \(GuestBuilder.toolDirectory)")
        let result = try runTool(nm, ["-u", object])
        #expect(result.status == 0, "\(result.output)")
        let undefined = Set(result.output.split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) })
        #expect(undefined.subtracting(Self.allowed).isEmpty, "\(source) \(optimization) calls \(undefined.subtracting(Self.allowed).sorted())")
    }
}
