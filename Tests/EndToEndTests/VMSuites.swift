import Foundation
import Testing

/// Every suite that starts VMs nests here, serialized: a 1 kHz guest costs CPU, and two
/// VMs at once on a 2-core CI machine make timing-dependent checks flaky.
@Suite(.serialized) struct VirtualMachines {}
