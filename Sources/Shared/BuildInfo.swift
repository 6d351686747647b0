import CLinux

/// What identifies a cprvmm binary: its release version and the GNU build id the linker
/// stamped into it. The live update reports both for the old and the new image.
public enum BuildInfo {
    public static let version = String(cString: clinux_version())

    /// Hex build id of the running executable, read from its own program headers in memory.
    public static let buildID: String = {
        var bytes = [UInt8](repeating: 0, count: 64)
        let count = clinux_build_id(&bytes, bytes.count)
        guard count > 0 else { return "none" }
        return bytes.prefix(count).map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined()
    }()

    public static var versionLine: String { "cprvmm version \(version) (build id \(buildID))" }
}
