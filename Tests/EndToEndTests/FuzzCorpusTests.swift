import Foundation
import Testing

/// The fuzz targets' seed corpus (Tests/Fuzz/corpus), run once through each target by the
/// plain build of cprvmm-fuzz: every input that once crashed a parser stays a regression test.
/// Fuzzing itself is scripts/fuzz (CI runs it briefly after the tests).
@Suite struct FuzzCorpusTests {
    @Test("every seed input goes through its fuzz target without a crash",
          arguments: ["state", "cpr-state", "qmp", "hmp", "command-line"])
    func corpusReplays(target: String) throws {
        let corpus = Binaries.packageRoot.appendingPathComponent("Tests/Fuzz/corpus/\(target)")
        let files = try FileManager.default.contentsOfDirectory(atPath: corpus.path).sorted().map { corpus.appendingPathComponent($0).path }
        #expect(!files.isEmpty, "no seed inputs for \(target)")
        let fuzzer = Binaries.directory.appendingPathComponent("cprvmm-fuzz").path
        let result = try runTool(fuzzer, ["replay", target] + files)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("\(target): \(files.count) inputs replayed"), "\(result.output)")
    }
}
