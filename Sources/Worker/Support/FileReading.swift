import Glibc

/// Reads a whole regular file of at most `limit` bytes, with errors that name the option.
func readWholeFile(_ path: String, limit: Int, option: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw ConfigurationError("\(option) \(path): \(SystemError.describe(errno))") }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
        throw ConfigurationError("\(option) \(path): not a regular file")
    }
    guard info.st_size <= limit else {
        throw ConfigurationError("\(option) \(path): file is \(info.st_size) bytes, more than the \(limit) cprvmm accepts")
    }
    var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { buffer in
            read(fd, buffer.baseAddress! + offset, buffer.count - offset)
        }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { throw ConfigurationError("\(option) \(path): read failed: \(n < 0 ? SystemError.describe(errno) : "file shrank")") }
        offset += n
    }
    return bytes
}
