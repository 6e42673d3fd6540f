/// How an operation in a history ended, as far as the client could tell.
enum OperationOutcome<Output: Sendable>: Sendable {
    /// It took effect and answered `Output`.
    case ok(Output)
    /// It definitely did not take effect (a 4xx answer, or the request never left the client).
    case failed
    /// It may or may not have taken effect, at any instant after its invocation (a 503 or 504,
    /// a timeout, a connection lost after the request was sent). Its response time is +infinity.
    case unknown
}

extension OperationOutcome: Equatable where Output: Equatable {}

/// One client operation in a concurrent history.
///
/// Times are nanoseconds of one monotonic clock shared by all clients of the history (see
/// `MonotonicClock`); only their order matters.
struct HistoryOperation<Key: Hashable & Sendable, Input: Sendable, Output: Sendable>: Sendable {
    /// Which client issued it; only used in reports.
    var client: Int
    /// The independent object it acts on (for memory, the word's address); histories are checked
    /// per key.
    var key: Key
    var input: Input
    /// When the client sent it.
    var invoke: UInt64
    /// When the client saw its answer; nil when the outcome is unknown.
    var response: UInt64?
    var outcome: OperationOutcome<Output>
}

/// The register histories the cluster tests record: keys are heap addresses.
typealias RegisterOperation<Value: RegisterValue> = HistoryOperation<UInt64, RegisterCall<Value>, RegisterReturn<Value>>
