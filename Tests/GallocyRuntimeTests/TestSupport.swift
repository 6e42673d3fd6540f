import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The handler, its registered heap and the fault service are per process: every suite of this
/// target runs inside this one, one test at a time, even when tests run in parallel.
@Suite(.serialized) enum RuntimeSuite {}

/// A counter and a start gate that threads share.
final class Shared: Sendable {
    let count = Atomic<Int>(0)
    let gate = Atomic<Int>(0)

    /// Counts this thread in and spins until `parties` have arrived, so that they fault together.
    func arriveAndWait(parties: Int) {
        gate.add(1, ordering: .acquiringAndReleasing)
        while gate.load(ordering: .acquiring) < parties {}
    }
}

/// Distinct heap bases per test, so that a leaked mapping in one test cannot break another.
enum TestBase {
    static let viewAlias: UInt = 0x2100_0000_0000
    static let firstWrite: UInt = 0x2110_0000_0000
    static let concurrent: UInt = 0x2120_0000_0000
    static let service: UInt = 0x2130_0000_0000
    static let pipe: UInt = 0x2140_0000_0000
    static let taken: UInt = 0x2150_0000_0000
    static let apply: UInt = 0x2160_0000_0000
    static let bench: UInt = 0x2170_0000_0000
    static let image: UInt = 0x2180_0000_0000
    static let protectedDirty: UInt = 0x2190_0000_0000
    static let race: UInt = 0x21A0_0000_0000
    static let lease: UInt = 0x21B0_0000_0000
    static let second: UInt = 0x21C0_0000_0000
}

/// A decoded `waitpid` status.
struct WaitStatus: Equatable, CustomStringConvertible {
    var raw: Int32
    var signal: Int32? {
        let s = raw & 0x7f
        return s != 0 && s != 0x7f ? s : nil
    }
    var exitCode: Int32? { raw & 0x7f == 0 ? (raw >> 8) & 0xff : nil }
    var description: String {
        if let signal { return "killed by signal \(signal) (status 0x\(String(raw, radix: 16)))" }
        return "exited with \(exitCode ?? -1)"
    }

    static func wait(for pid: pid_t) -> WaitStatus? {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return nil }
        }
        return WaitStatus(raw: status)
    }
}
