/// The tail of the log that the host has not yet persisted: an incoming snapshot, if any, and
/// the entries after it (or after storage's last entry).
struct UnstableLog {
    var snapshot: Snapshot?
    var entries: [Entry] = []
    /// The index of entries[0] (or of the next entry, when there are none).
    var offset: UInt64

    init(offset: UInt64) { self.offset = offset }

    var firstIndexIfSnapshot: UInt64? { snapshot.map { $0.metadata.index + 1 } }

    var lastIndex: UInt64? {
        if !entries.isEmpty { return offset + UInt64(entries.count) - 1 }
        return snapshot?.metadata.index
    }

    func term(at index: UInt64) -> UInt64? {
        if index < offset {
            if let snapshot, snapshot.metadata.index == index { return snapshot.metadata.term }
            return nil
        }
        guard let last = lastIndex, index <= last, !entries.isEmpty else { return nil }
        return entries[Int(index - offset)].term
    }

    /// The host persisted entries up to `index`, the last of which had term `term`. If the log
    /// changed since (a conflicting leader truncated it), the newer entries stay unstable.
    mutating func stable(to index: UInt64, term: UInt64) {
        guard index >= offset, let t = self.term(at: index), t == term else { return }
        entries.removeFirst(Int(index + 1 - offset))
        offset = index + 1
    }

    mutating func stableSnapshot(to index: UInt64) {
        if snapshot?.metadata.index == index { snapshot = nil }
    }

    mutating func restore(_ snap: Snapshot) {
        offset = snap.metadata.index + 1
        entries = []
        snapshot = snap
    }

    /// Appends entries that start right after, or replace part of, the current log.
    mutating func truncateAndAppend(_ new: [Entry]) {
        guard let after = new.first?.index else { return }
        if after == offset + UInt64(entries.count) {
            entries.append(contentsOf: new)
        } else if after <= offset {
            // Replaces everything unstable, and logically the stored entries from `after` on.
            offset = after
            entries = new
        } else {
            entries.removeSubrange(Int(after - offset)...)
            entries.append(contentsOf: new)
        }
    }

    func slice(_ lo: UInt64, _ hi: UInt64) -> ArraySlice<Entry> {
        entries[Int(lo - offset)..<Int(hi - offset)]
    }
}
