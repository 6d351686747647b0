/// The `-incoming URI` option of a cprvmm command line, which every live update rewrites:
/// the next image loads from the update's URI, whatever the previous one loaded from.
public enum IncomingOption {
    /// The arguments without any `-incoming X` (or `--incoming X`).
    public static func removed(from arguments: [String]) -> [String] {
        var result: [String] = []
        var skipNext = false
        for argument in arguments {
            if skipNext { skipNext = false; continue }
            if argument == "-incoming" || argument == "--incoming" { skipNext = true; continue }
            result.append(argument)
        }
        return result
    }

    /// The value of the last `-incoming X` in the arguments, if any.
    public static func value(in arguments: [String]) -> String? {
        var value: String?
        for (index, argument) in arguments.enumerated() where argument == "-incoming" || argument == "--incoming" {
            if index + 1 < arguments.count { value = arguments[index + 1] }
        }
        return value
    }
}
