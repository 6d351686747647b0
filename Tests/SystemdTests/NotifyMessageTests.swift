import Testing
import Worker

@testable import Systemd

/// The sd_notify datagrams cprvmm sends for each notification. The end-to-end suite
/// (ServiceNotifyTests) receives the same messages from a running cprvmm on a socket it binds.
@Suite struct NotifyMessageTests {
    static func texts(_ notifications: [ServiceNotification], now: UInt64 = 1234) -> [String] {
        SystemdNotifier.messages(for: notifications, monotonicMicroseconds: now).map(\.text)
    }

    @Test func readyCarriesItsStatus() {
        #expect(Self.texts([.ready(status: "running, update generation 0")]) == ["READY=1\nSTATUS=running, update generation 0"])
    }

    @Test func reloadingCarriesTheMonotonicTime() {
        #expect(Self.texts([.reloading(status: "live update")], now: 987_654) == ["RELOADING=1\nMONOTONIC_USEC=987654\nSTATUS=live update"])
    }

    @Test func statusStoppingWatchdogAndTimeoutExtension() {
        #expect(Self.texts([.status("paused")]) == ["STATUS=paused"])
        #expect(Self.texts([.stopping(status: "shutting down")]) == ["STOPPING=1\nSTATUS=shutting down"])
        #expect(Self.texts([.watchdog]) == ["WATCHDOG=1"])
        #expect(Self.texts([.extendTimeout(microseconds: 10_000_000)]) == ["EXTEND_TIMEOUT_USEC=10000000"])
    }

    @Test func fdlessNotificationsShareOneMessage() {
        #expect(Self.texts([.ready(status: "running"), .watchdog]) == ["READY=1\nSTATUS=running\nWATCHDOG=1"])
    }

    @Test func everyStoredFDTravelsAloneWithItsName() {
        let messages = SystemdNotifier.messages(
            for: [.storeFD(name: "ram-pc.ram", fd: 7), .status("x"), .storeFD(name: "vm-state", fd: 9)], monotonicMicroseconds: 0)
        #expect(messages == [
            .init(text: "STATUS=x", fds: []),
            .init(text: "FDSTORE=1\nFDNAME=ram-pc.ram", fds: [7]),
            .init(text: "FDSTORE=1\nFDNAME=vm-state", fds: [9]),
        ])
    }

    @Test func everyRemovalIsItsOwnMessage() {
        #expect(Self.texts([.removeStoredFD(name: "vm-state"), .removeStoredFD(name: "cpr-state")])
            == ["FDSTOREREMOVE=1\nFDNAME=vm-state", "FDSTOREREMOVE=1\nFDNAME=cpr-state"])
    }

    @Test func statusStaysOnOneLine() {
        #expect(Self.texts([.status("line one\nline two\r")]) == ["STATUS=line one line two "])
    }

    @Test func fdNamesAreWhatSystemdAccepts() {
        #expect(SystemdNotifier.fdName("ram-pc.ram") == "ram-pc.ram")
        #expect(SystemdNotifier.fdName("ram:main memory") == "ram_main_memory")
        #expect(SystemdNotifier.fdName("é") == "_")
        #expect(SystemdNotifier.fdName(String(repeating: "a", count: 300)).count == 255)
    }
}

/// LISTEN_* as systemd sets them for a restarted service with a full fd store.
@Suite struct ListenFDsTests {
    @Test func namedFDsFromThree() {
        let fds = ListenFDs.parse(pid: "42", count: "3", names: "ram-pc.ram:vm-state:cpr-state", ownPID: 42)
        #expect(fds?.map(\.name) == ["ram-pc.ram", "vm-state", "cpr-state"])
        #expect(fds?.map(\.fd) == [3, 4, 5])
    }

    @Test func anotherProcessesFDsAreNotOurs() {
        #expect(ListenFDs.parse(pid: "41", count: "3", names: "a:b:c", ownPID: 42) == nil)
        #expect(ListenFDs.parse(pid: nil, count: "3", names: "a:b:c", ownPID: 42) == nil)
        #expect(ListenFDs.parse(pid: "42", count: "x", names: nil, ownPID: 42) == nil)
        #expect(ListenFDs.parse(pid: "42", count: "0", names: nil, ownPID: 42) == nil)
    }

    @Test func namesOfTheWrongLengthAreUnknown() {
        #expect(ListenFDs.parse(pid: "42", count: "2", names: "a", ownPID: 42)?.map(\.name) == ["unknown", "unknown"])
        #expect(ListenFDs.parse(pid: "42", count: "2", names: nil, ownPID: 42)?.map(\.name) == ["unknown", "unknown"])
    }
}
