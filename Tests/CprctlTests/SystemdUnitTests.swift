import Glibc
import Shared
import Testing

@testable import cprctl

/// `cprctl status` adds what systemd knows about the VM's unit (cprvmm@NAME.service).
@Suite struct SystemdUnitTests {
    @Test func unitNameIsTheTemplateInstance() {
        #expect(SystemdUnit.unitName(forVM: "web1") == "cprvmm@web1.service")
        #expect(SystemdUnit.unitName(forVM: "db-2.prod_x") == "cprvmm@db-2.prod_x.service")
    }

    @Test func namesThatNeedEscapingAreNotLookedUp() {
        #expect(SystemdUnit.unitName(forVM: "") == nil)
        #expect(SystemdUnit.unitName(forVM: "a b") == nil)
        #expect(SystemdUnit.unitName(forVM: "x;rm -rf /") == nil)
        #expect(SystemdUnit.unitName(forVM: "wéb") == nil)
    }

    @Test func summaryLine() {
        let unit: JSONValue = [
            "Id": "cprvmm@web1.service", "ActiveState": "active", "SubState": "running",
            "MainPID": "4242", "NRestarts": "1", "NFileDescriptorStore": "3",
        ]
        #expect(SystemdUnit.summary(unit) == "cprvmm@web1.service active (running), MainPID 4242, restarts 1, 3 fds in its fd store")
    }

    @Test func theReportShowsTheUnitUnderThePID() {
        var status = StatusReportTests.status
        if case .object(var object) = status {
            object["systemd"] = ["Id": "cprvmm@web1.service", "ActiveState": "active", "SubState": "reloading",
                                 "MainPID": "1234", "NRestarts": "0", "NFileDescriptorStore": "1"]
            status = .object(object)
        }
        let lines = StatusReport.format(status, now: StatusReportTests.imageStarted).split(separator: "\n")
        #expect(lines[1] == "  PID:          1234")
        #expect(lines[2] == "  systemd:      cprvmm@web1.service active (reloading), MainPID 1234, restarts 0, 1 fds in its fd store")
    }

    @Test func noUnitWithoutSystemd() {
        // This machine's PID 1 is not systemd (or the unit is not loaded): nothing is added.
        #expect(SystemdUnit.query(vmName: "cprvmm-test-no-such-vm-\(getpid())") == nil)
    }
}
