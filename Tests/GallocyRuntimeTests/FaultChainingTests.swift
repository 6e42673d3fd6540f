import CGallocyRuntime
import GallocyRuntime
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Faults that are not ours reach the disposition installed before ours, in a forked child that
/// runs only async-signal-safe code (`CGallocyRuntime_fault_check_fork`).
extension RuntimeSuite {
    @Suite struct FaultChainingTests {
        func run(routine: Int32) throws -> WaitStatus {
            let pid = CGallocyRuntime_fault_check_fork(routine)
            try #require(pid > 0)
            return try #require(WaitStatus.wait(for: pid))
        }

        @Test func aStrayNullWriteStillDiesOfSIGSEGVAsWithoutGallocy() throws {
            let without = try run(routine: 0)
            let with = try run(routine: 1)
            #expect(without.signal == SIGSEGV, "\(without)")
            #expect(with.signal == SIGSEGV, "\(with)")
            #expect(with == without)
        }

        @Test func aSigInfoHandlerInstalledBeforeIsCalled() throws {
            let status = try run(routine: 2)
            #expect(status.exitCode == 42, "\(status)")
        }

        @Test func anIgnoredSIGSEGVStillKillsOnANullWrite() throws {
            let status = try run(routine: 3)
            #expect(status.signal == SIGSEGV, "\(status)")
        }
    }
}
