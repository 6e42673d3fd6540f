/// `RaftLogReader` in memory, for tests, the simulator, and as the model an on-disk store follows.
/// Not thread-safe: one owner drives it, as it drives the core.
public final class MemoryStorage: RaftLogReader {
    public private(set) var hardState: HardState
    /// The membership as of the snapshot, or the bootstrap membership.
    public private(set) var confState: ConfState
    public private(set) var latestSnapshot: Snapshot
    /// entries[0] stands for the snapshot's entry (index and term only), so that the term of
    /// firstIndex - 1 is always known.
    private var log: [Entry]

    /// A fresh member. With a membership, a founding member: its log starts with a bootstrap
    /// snapshot at index 1 (term 1) that holds the initial configuration, so that members
    /// added later learn that configuration from the snapshot the leader sends them. Without
    /// one, a member to be added later: it starts empty and waits to hear from a leader.
    public init(confState: ConfState = ConfState()) {
        hardState = HardState()
        self.confState = confState
        if confState.voters.isEmpty {
            latestSnapshot = Snapshot()
            log = [Entry(term: 0, index: 0)]
        } else {
            latestSnapshot = Snapshot(metadata: SnapshotMetadata(index: 1, term: 1, confState: confState))
            log = [Entry(term: 1, index: 1)]
        }
    }

    public func initialState() -> (hardState: HardState, confState: ConfState) { (hardState, confState) }

    public var firstIndex: UInt64 { log[0].index + 1 }
    public var lastIndex: UInt64 { log[0].index + UInt64(log.count) - 1 }

    public func term(at index: UInt64) -> UInt64? {
        let offset = log[0].index
        guard index >= offset, index <= lastIndex else { return nil }
        return log[Int(index - offset)].term
    }

    public func entries(from lo: UInt64, to hi: UInt64, maxBytes: Int) -> [Entry] {
        let offset = log[0].index
        guard lo > offset, hi <= lastIndex + 1, lo < hi else { return [] }
        var out: [Entry] = []
        var size = 0
        for i in Int(lo - offset)..<Int(hi - offset) {
            size += entryCost(log[i])
            if !out.isEmpty && size > maxBytes { break }
            out.append(log[i])
        }
        return out
    }

    public func snapshot() -> Snapshot { latestSnapshot }

    public func setHardState(_ state: HardState) { hardState = state }

    /// Appends entries handed out by a `Ready`, replacing any entries from the first one's index on.
    public func append(_ entries: [Entry]) {
        guard let first = entries.first else { return }
        let offset = log[0].index
        // Entries already compacted away are committed and applied: nothing to do for them.
        let usable = entries.drop { $0.index <= offset }
        guard let start = usable.first?.index else { return }
        precondition(start <= lastIndex + 1, "gap in the log: appending \(first.index) after \(lastIndex)")
        log.removeSubrange(Int(start - offset)...)
        log.append(contentsOf: usable)
    }

    /// Installs a snapshot received from the leader (a `Ready.snapshot`): the log is replaced.
    public func applySnapshot(_ snapshot: Snapshot) {
        guard snapshot.metadata.index > latestSnapshot.metadata.index else { return }
        latestSnapshot = snapshot
        confState = snapshot.metadata.confState
        log = [Entry(term: snapshot.metadata.term, index: snapshot.metadata.index)]
    }

    /// Records a snapshot the host took of its state machine at `index` (applied, so in the log),
    /// and compacts the log up to it.
    public func createSnapshot(index: UInt64, confState: ConfState, data: [UInt8]) {
        guard index > latestSnapshot.metadata.index, let term = term(at: index) else { return }
        latestSnapshot = Snapshot(metadata: SnapshotMetadata(index: index, term: term, confState: confState), data: data)
        self.confState = confState
        compact(to: index)
    }

    /// Drops the entries before `index` (keeping `index` as the new dummy entry).
    public func compact(to index: UInt64) {
        let offset = log[0].index
        guard index > offset, index <= lastIndex else { return }
        let dummy = Entry(term: log[Int(index - offset)].term, index: index)
        log.removeSubrange(0...Int(index - offset))
        log.insert(dummy, at: 0)
    }
}
