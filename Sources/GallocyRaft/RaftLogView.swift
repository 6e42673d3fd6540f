/// The core's view of the log: what storage holds, plus the unstable tail, plus the commit and
/// apply positions.
struct RaftLogView {
    let storage: any RaftLogReader
    var unstable: UnstableLog
    /// The highest index known to be committed.
    var committed: UInt64
    /// The highest index the host has applied (acknowledged through `advance`).
    var applied: UInt64

    init(storage: any RaftLogReader) {
        self.storage = storage
        unstable = UnstableLog(offset: storage.lastIndex + 1)
        committed = storage.firstIndex - 1
        applied = storage.firstIndex - 1
    }

    var firstIndex: UInt64 { unstable.firstIndexIfSnapshot ?? storage.firstIndex }
    var lastIndex: UInt64 { unstable.lastIndex ?? storage.lastIndex }
    var lastTerm: UInt64 { term(at: lastIndex) ?? 0 }
    /// The last index the host has made durable (everything before the unstable tail).
    var persistedLastIndex: UInt64 { unstable.snapshot == nil ? unstable.offset - 1 : 0 }

    func term(at index: UInt64) -> UInt64? {
        let dummy = firstIndex - 1
        guard index >= dummy, index <= lastIndex else { return nil }
        if let t = unstable.term(at: index) { return t }
        if index >= unstable.offset { return nil }
        return storage.term(at: index)
    }

    func matchTerm(_ index: UInt64, _ term: UInt64) -> Bool { self.term(at: index) == term }

    /// Raft's election restriction: the candidate's log is at least as up-to-date as ours.
    func isUpToDate(lastIndex index: UInt64, term: UInt64) -> Bool {
        term > lastTerm || (term == lastTerm && index >= lastIndex)
    }

    /// Entries in [lo, hi) within `maxBytes` (at least one). Empty if lo was compacted.
    func entries(_ lo: UInt64, _ hi: UInt64, maxBytes: Int) -> [Entry]? {
        guard lo >= firstIndex else { return nil }
        let hi = min(hi, lastIndex + 1)
        guard lo < hi else { return [] }
        var out: [Entry] = []
        var budget = maxBytes
        if lo < unstable.offset {
            let stored = storage.entries(from: lo, to: min(hi, unstable.offset), maxBytes: maxBytes)
            // A store that cannot give what it claims to hold is treated as compacted.
            guard let first = stored.first, first.index == lo else { return nil }
            out = stored
            budget -= stored.reduce(0) { $0 + entryCost($1) }
            if out.last!.index + 1 < min(hi, unstable.offset) || budget <= 0 { return out }
        }
        let start = max(lo, unstable.offset)
        if start < hi {
            for entry in unstable.slice(start, hi) {
                let cost = entryCost(entry)
                if !out.isEmpty && cost > budget { break }
                out.append(entry)
                budget -= cost
            }
        }
        return out
    }

    /// The first index in `new` whose term differs from ours (0 if none, or all are new and follow).
    func findConflict(_ new: [Entry]) -> UInt64 {
        for entry in new where !matchTerm(entry.index, entry.term) { return entry.index }
        return 0
    }

    /// The largest index <= `index` whose term is <= `term` (fast back-off).
    func findConflictByTerm(_ index: UInt64, _ term: UInt64) -> UInt64 {
        var i = min(index, lastIndex)
        while i > 0 {
            guard let t = self.term(at: i) else { return i }
            if t <= term { return i }
            i -= 1
        }
        return 0
    }

    mutating func append(_ new: [Entry]) {
        unstable.truncateAndAppend(new)
    }

    mutating func commit(to index: UInt64) {
        if index > committed && index <= lastIndex { committed = index }
    }

    /// The leader's commit rule: only an entry of the current term commits by counting replicas.
    mutating func maybeCommit(_ index: UInt64, term: UInt64) -> Bool {
        guard index > committed, self.term(at: index) == term else { return false }
        committed = index
        return true
    }

    mutating func restore(_ snapshot: Snapshot) {
        committed = snapshot.metadata.index
        unstable.restore(snapshot)
    }

    var hasPendingSnapshot: Bool { unstable.snapshot != nil }

    func nextCommittedEntries(maxBytes: Int) -> [Entry] {
        guard !hasPendingSnapshot else { return [] }
        let lo = max(applied + 1, firstIndex)
        guard committed + 1 > lo else { return [] }
        return entries(lo, committed + 1, maxBytes: maxBytes) ?? []
    }

    var hasNextCommittedEntries: Bool {
        !hasPendingSnapshot && committed > max(applied, firstIndex - 1)
    }
}
