/// A sequential specification that the linearizability checker tests a history against.
///
/// The checker needs the model to be deterministic given an operation's output (or, for an
/// operation whose outcome is unknown, given only its input): `step` returns the one state after the
/// operation, or nil if the operation with that output is impossible in `state`. States are
/// `Hashable` because the checker memoizes (linearized set, state) pairs, as in Lowe's and
/// Porcupine's versions of the Wing–Gong search.
protocol SequentialModel: Sendable {
    associatedtype State: Hashable & Sendable
    associatedtype Input: Sendable
    associatedtype Output: Sendable

    /// The state before any operation.
    var initialState: State { get }

    /// The state after applying `input` in `state`, or nil if that cannot produce `output`.
    /// `output` is nil when the operation's outcome is unknown: then every output is acceptable and
    /// only the effect on the state matters.
    func step(_ state: State, _ input: Input, _ output: Output?) -> State?

    /// A short human-readable form of an operation, used in failure reports.
    func describe(_ input: Input, _ output: Output?) -> String

    /// A short human-readable form of a state, used in failure reports.
    func describe(_ state: State) -> String

    /// An equivalent history that is cheaper to search: the same verdict, fewer operations. Each
    /// operation with an unknown outcome doubles what the search may have to try, so a model that
    /// can prove some of them irrelevant should drop them here. The default keeps every operation.
    func simplify<Key>(
        _ operations: [HistoryOperation<Key, Input, Output>]
    ) -> [HistoryOperation<Key, Input, Output>]
}

extension SequentialModel {
    func simplify<Key>(
        _ operations: [HistoryOperation<Key, Input, Output>]
    ) -> [HistoryOperation<Key, Input, Output>] {
        operations
    }
}
