import Testing
@testable import Worker

@Suite struct MigrationURITests {
    @Test(arguments: [
        ("file:/var/tmp/vm.state", MigrationURI.file(path: "/var/tmp/vm.state", offset: 0)),
        ("file:relative/state", .file(path: "relative/state", offset: 0)),
        ("file:/x,offset=4096", .file(path: "/x", offset: 4096)),
        ("file:/x,offset=0x1000", .file(path: "/x", offset: 4096)),
        ("file:/x,offset=4K", .file(path: "/x", offset: 4096)),         // qemu_strtosz, as QEMU
        ("file:/x,offset=0", .file(path: "/x", offset: 0)),
        ("file:/a,b/c", .file(path: "/a,b/c", offset: 0)),                // only ",offset=" is special
        ("unix:/run/cprvmm/migrate.sock", .unix(path: "/run/cprvmm/migrate.sock")),
        ("tcp:127.0.0.1:4444", .tcp(host: "127.0.0.1", port: 4444)),
        ("tcp:migration-host.example:0", .tcp(host: "migration-host.example", port: 0)),
        ("tcp:[::1]:65535", .tcp(host: "::1", port: 65535)),
        ("tcp::4444", .tcp(host: "", port: 4444)),                        // any address, as QEMU
        ("exec:cat > /tmp/vm.state", .exec(command: "cat > /tmp/vm.state")),
        ("exec:gzip -c | ssh host 'cat > x'", .exec(command: "gzip -c | ssh host 'cat > x'")),
        ("memfd:", .memfd),
    ])
    func parsesGoodURIs(text: String, expected: MigrationURI) throws {
        #expect(try MigrationURI.parse(text) == expected)
    }

    @Test(arguments: [
        ("ftp:x", "invalid migration URI 'ftp:x' (use file:PATH[,offset=N], unix:PATH, tcp:HOST:PORT, exec:COMMAND, or memfd: for a live update)"),
        ("", "invalid migration URI '' (use file:PATH[,offset=N], unix:PATH, tcp:HOST:PORT, exec:COMMAND, or memfd: for a live update)"),
        ("/tmp/state", "invalid migration URI '/tmp/state' (use file:PATH[,offset=N], unix:PATH, tcp:HOST:PORT, exec:COMMAND, or memfd: for a live update)"),
        ("fd:3", "invalid migration URI 'fd:3' (use file:PATH[,offset=N], unix:PATH, tcp:HOST:PORT, exec:COMMAND, or memfd: for a live update)"),
        ("FILE:/x", "invalid migration URI 'FILE:/x' (use file:PATH[,offset=N], unix:PATH, tcp:HOST:PORT, exec:COMMAND, or memfd: for a live update)"),
        ("file:", "file: URI needs a path"),
        ("file:,offset=5", "file: URI needs a path"),
        ("file:/x,offset=abc", "file:/x,offset=abc: invalid offset"),
        ("file:/x,offset=", "file:/x,offset=: invalid offset"),
        ("file:/x,offset=-1", "file:/x,offset=-1: invalid offset"),
        ("file:/x,offset=99999999999999999999", "file:/x,offset=99999999999999999999: invalid offset"),
        ("unix:", "unix: URI needs a path"),
        ("exec:", "exec: URI needs a command"),
        ("exec:   ", "exec: URI needs a command"),
        ("tcp:host:99999", "tcp:host:99999: invalid port"),
        ("tcp:host:65536", "tcp:host:65536: invalid port"),
        ("tcp:host:", "tcp:host:: invalid port"),
        ("tcp:host:-1", "tcp:host:-1: invalid port"),
        ("tcp:host:http", "tcp:host:http: invalid port"),
        ("tcp:host:4444,ipv4", "tcp:host:4444,ipv4: invalid port"),
        ("tcp:host", "tcp:host: expected tcp:HOST:PORT"),
        ("tcp:", "tcp:: expected tcp:HOST:PORT"),
        ("tcp:[::1:4444", "tcp:[::1:4444: missing ']' after the IPv6 address"),
        ("tcp:[::1]4444", "tcp:[::1]4444: expected tcp:HOST:PORT"),
        ("tcp:[]:4444", "tcp:[]:4444: empty IPv6 address"),
    ])
    func rejectsBadURIs(text: String, message: String) {
        #expect(throws: MigrationURIError(message)) { try MigrationURI.parse(text) }
    }

    @Test func descriptionIsTheURIText() throws {
        #expect(MigrationURI.file(path: "/x", offset: 0).description == "file:/x")
        #expect(MigrationURI.file(path: "/x", offset: 4096).description == "file:/x,offset=4096")
        #expect(MigrationURI.unix(path: "/s").description == "unix:/s")
        #expect(MigrationURI.tcp(host: "h", port: 1).description == "tcp:h:1")
        #expect(MigrationURI.tcp(host: "::1", port: 80).description == "tcp:[::1]:80")
        #expect(MigrationURI.tcp(host: "", port: 80).description == "tcp::80")
        #expect(MigrationURI.exec(command: "cat > f").description == "exec:cat > f")
        for text in ["file:/x,offset=0x10", "tcp:[fe80::1]:7", "tcp::9", "unix:/a b", "exec:true"] {
            let uri = try MigrationURI.parse(text)
            #expect(try MigrationURI.parse(uri.description) == uri)
        }
        #expect("\(MigrationURIError("m"))" == "m")
    }

    @Test func onlyFileIsNotStreaming() {
        #expect(!MigrationURI.file(path: "/x", offset: 0).isStreaming)
        #expect(MigrationURI.unix(path: "/x").isStreaming)
        #expect(MigrationURI.tcp(host: "h", port: 1).isStreaming)
        #expect(MigrationURI.exec(command: "cat").isStreaming)
    }
}
