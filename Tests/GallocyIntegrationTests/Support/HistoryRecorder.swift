import Synchronization

/// Collects a concurrent history from many client tasks: each records its invocation before it
/// sends a request and its outcome after the answer, with the shared monotonic clock.
///
/// An operation that was invoked but never completed (its client was cancelled, or the test ended)
/// appears in `operations` with an unknown outcome, which is what it is.
final class HistoryRecorder<Key: Hashable & Sendable, Input: Sendable, Output: Sendable>: Sendable {
    typealias Operation = HistoryOperation<Key, Input, Output>

    /// A handle on an invoked operation, to complete it with.
    struct Pending: Sendable {
        fileprivate let index: Int
    }

    private let entries = Mutex<[Operation]>([])

    init() {}

    /// Records that `client` is about to send `input`; call it before the request leaves.
    func invoke(client: Int, key: Key, input: Input) -> Pending {
        entries.withLock { entries in
            // The time is taken under the lock so that the history's order of invocations is the
            // order of the entries, which keeps reports easy to read.
            let now = MonotonicClock.nanoseconds()
            entries.append(
                Operation(client: client, key: key, input: input, invoke: now, response: nil, outcome: .unknown))
            return Pending(index: entries.count - 1)
        }
    }

    /// Records how the operation ended; call it after the answer arrived (or the attempt failed).
    func complete(_ pending: Pending, _ outcome: OperationOutcome<Output>) {
        let now = MonotonicClock.nanoseconds()
        entries.withLock { entries in
            entries[pending.index].outcome = outcome
            if case .unknown = outcome {
                entries[pending.index].response = nil
            } else {
                entries[pending.index].response = now
            }
        }
    }

    /// Runs one operation: records the invocation, runs `body`, and records what `classify` makes of
    /// its result (for a node request: the answer, or an error's definite or unknown outcome).
    @discardableResult
    func record<Result: Sendable>(
        client: Int, key: Key, input: Input,
        _ body: () async throws -> Result,
        classify: (Swift.Result<Result, any Error>) -> OperationOutcome<Output>
    ) async -> Swift.Result<Result, any Error> {
        let pending = invoke(client: client, key: key, input: input)
        let result: Swift.Result<Result, any Error>
        do {
            result = .success(try await body())
        } catch {
            result = .failure(error)
        }
        complete(pending, classify(result))
        return result
    }

    /// The history so far; operations still pending are unknown.
    var operations: [Operation] { entries.withLock { $0 } }

    var count: Int { entries.withLock { $0.count } }
}
