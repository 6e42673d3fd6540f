import Synchronization
import Testing

/// The recorder with in-process registers: a correct one gives linearizable histories, a broken
/// one is caught.
@Suite struct HistoryRecorderTests {
    typealias Recorder = HistoryRecorder<UInt64, RegisterCall<UInt64>, RegisterReturn<UInt64>>

    /// Registers behind one lock: linearizable by construction.
    final class AtomicRegisters: Sendable {
        private let values = Mutex<[UInt64: UInt64]>([:])

        func apply(_ key: UInt64, _ call: RegisterCall<UInt64>) -> RegisterReturn<UInt64> {
            values.withLock { values in
                let old = values[key, default: 0]
                switch call {
                case .read: return .value(old)
                case .write(let new):
                    values[key] = new
                    return .written
                case .cas(let expect, let new):
                    if old == expect { values[key] = new }
                    return .atomic(ok: old == expect, old: old)
                case .swap(let new):
                    values[key] = new
                    return .atomic(ok: true, old: old)
                case .add(let delta):
                    values[key] = old &+ delta
                    return .atomic(ok: true, old: old)
                }
            }
        }
    }

    @Test func concurrentClientsOnACorrectRegisterGiveALinearizableHistory() async throws {
        let recorder = Recorder()
        let registers = AtomicRegisters()
        await withTaskGroup(of: Void.self) { group in
            for client in 0..<6 {
                group.addTask {
                    var random = SplitMix64(seed: UInt64(client) + 100)
                    for _ in 0..<200 {
                        let key = UInt64.random(in: 0..<3, using: &random) * 8
                        let call: RegisterCall<UInt64> =
                            switch Int.random(in: 0..<4, using: &random) {
                            case 0: .read
                            case 1: .write(UInt64.random(in: 0..<5, using: &random))
                            case 2:
                                .cas(
                                    expect: UInt64.random(in: 0..<5, using: &random),
                                    new: UInt64.random(in: 0..<5, using: &random))
                            default: .add(1)
                            }
                        await recorder.record(client: client, key: key, input: call) {
                            await Task.yield()
                            return registers.apply(key, call)
                        } classify: { result in
                            NodeClient.outcome(of: result) { $0 }
                        }
                    }
                }
            }
        }
        let history = recorder.operations
        #expect(history.count == 1_200)
        #expect(history.allSatisfy { operation in operation.response.map { $0 >= operation.invoke } ?? false })
        let report = LinearizabilityChecker.checkRegisters(history, initial: UInt64(0))
        #expect(report.verdict.isLinearizable, "\(report)")
    }

    @Test func aClientThatReadsFromAStaleCacheIsCaught() async throws {
        let recorder = Recorder()
        let registers = AtomicRegisters()
        var cached: UInt64?
        func write(_ value: UInt64) async {
            await recorder.record(client: 1, key: 0, input: .write(value)) {
                registers.apply(0, .write(value))
            } classify: {
                NodeClient.outcome(of: $0) { $0 }
            }
        }
        func cachedRead() async {
            await recorder.record(client: 2, key: 0, input: .read) {
                if let cached { return RegisterReturn<UInt64>.value(cached) }
                let answer = registers.apply(0, .read)
                if case .value(let value) = answer { cached = value }
                return answer
            } classify: {
                NodeClient.outcome(of: $0) { $0 }
            }
        }
        await write(1)
        await cachedRead()
        await write(2)
        await cachedRead()
        let report = LinearizabilityChecker.checkRegisters(recorder.operations, initial: UInt64(0))
        guard case .notLinearizable(let violation) = report.verdict else {
            Issue.record("stale read not caught: \(report)")
            return
        }
        #expect(violation.blocked?.contains("client 2") == true, "\(violation)")
    }

    @Test func operationsNeverCompletedAreUnknown() {
        let recorder = Recorder()
        let pending = recorder.invoke(client: 1, key: 0, input: .write(5))
        let done = recorder.invoke(client: 2, key: 0, input: .read)
        recorder.complete(done, .ok(.value(5)))
        var history = recorder.operations
        #expect(history[0].outcome == .unknown)
        #expect(history[0].response == nil)
        #expect(history[1].response != nil)
        // The write may have happened: the read of 5 is explained by it.
        #expect(LinearizabilityChecker.checkRegisters(history, initial: UInt64(0)).verdict.isLinearizable)
        recorder.complete(pending, .failed)
        history = recorder.operations
        #expect(history[0].outcome == .failed)
        // Now the write definitely did not happen, and nothing explains the 5.
        #expect(LinearizabilityChecker.checkRegisters(history, initial: UInt64(0)).verdict.isViolation)
    }
}
