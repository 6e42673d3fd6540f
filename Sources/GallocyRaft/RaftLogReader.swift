/// What the core reads of the host's durable state. The host writes it (appending the entries of
/// each `Ready`, recording its hard state, installing snapshots, compacting); the core only
/// reads. Indices are those of the log: entries live in [firstIndex, lastIndex], and the entry at
/// firstIndex - 1 is the one the latest snapshot covers (its term is still known).
public protocol RaftLogReader: AnyObject {
    /// The hard state and the membership as of the snapshot (or the bootstrap membership).
    func initialState() -> (hardState: HardState, confState: ConfState)
    /// Entries in [lo, hi), stopping once `maxBytes` is reached but always returning at least
    /// one entry if the range is not empty. The core asks only for ranges within bounds.
    func entries(from lo: UInt64, to hi: UInt64, maxBytes: Int) -> [Entry]
    /// The term of the entry at `index`, for index in [firstIndex - 1, lastIndex]; nil outside.
    func term(at index: UInt64) -> UInt64?
    /// The index of the first entry still in the log (snapshot index + 1).
    var firstIndex: UInt64 { get }
    /// The index of the last entry in the log (the snapshot index if the log is empty).
    var lastIndex: UInt64 { get }
    /// The latest snapshot (empty if none), sent to followers that are behind the compacted log.
    func snapshot() -> Snapshot
}

/// The bytes an entry costs for flow control and batching: its payload and a fixed overhead.
@inline(__always)
func entryCost(_ entry: Entry) -> Int { entry.data.count + 24 }
