import Glibc

// Thin entry point: all logic is in Cprctl.run, which tests call through @testable import.
let result = Cprctl.run(Array(CommandLine.arguments.dropFirst()))
fputs(result.output, stdout)
fputs(result.errorOutput, stderr)
exit(result.exitStatus)
