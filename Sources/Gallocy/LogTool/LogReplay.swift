import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage

/// Rebuilds a member's state as of some index with the very code members run: the state machine
/// is restored from the snapshot in force (`StateMachine(snapshot:)`), then every log entry after
/// it is applied in order (`StateMachine.apply(_:)`) up to the target index.
package struct LogReplay {
    /// The state machine, with `appliedIndex == index`.
    package var machine: StateMachine
    /// The index replayed to.
    package var index: UInt64
    /// The index the replay started from (the snapshot's, or 0).
    package var startIndex: UInt64
    /// The membership as of `index`: the snapshot's, with the log's membership changes applied.
    /// Only known when the replay started from a snapshot (`confStateKnown`): the membership a
    /// cluster bootstraps with is stored beside the log, not in it.
    package var confState: ConfState
    package var confStateKnown: Bool
    /// The membership changes applied, with their indexes.
    package var membershipChanges: [(index: UInt64, change: ConfChange)] = []
    /// Entries applied from the log.
    package var entriesApplied: Int
    /// Bytes of log entries read.
    package var bytesRead: Int

    /// Where a replay of `directory` can start: the snapshot in force, when there is one and the
    /// log continues from it; from scratch when the log starts at index 1.
    package static func startIndex(of directory: LogDirectory) throws(LogToolError) -> UInt64 {
        let first = directory.storage.firstIndex
        let snapshotIndex = directory.storage.snapshot?.metadata.index ?? 0
        if snapshotIndex > 0, snapshotIndex + 1 >= first { return snapshotIndex }
        if first == 1 { return 0 }
        throw LogToolError(
            .corrupted,
            "\(directory.path): the log starts at \(first) but "
                + (snapshotIndex == 0 ? "there is no snapshot" : "the snapshot is at \(snapshotIndex)")
                + ": entries \(snapshotIndex + 1)...\(first - 1) are missing, so the state cannot be rebuilt")
    }

    /// Replays `directory` up to `target` (default: its commit index), calling `progress` with
    /// (entries applied, entries to apply) every few thousand entries, and `observe` with each
    /// applied entry (for `dump --results`).
    package init(
        _ directory: LogDirectory, to target: UInt64? = nil,
        progress: ((Int, Int) -> Void)? = nil,
        observe: ((Entry, StateMachine.AppliedEntry, Int) throws(LogToolError) -> Void)? = nil
    ) throws(LogToolError) {
        let storage = directory.storage
        let to = target ?? directory.commitIndex
        let start = try Self.startIndex(of: directory)
        if to < start {
            throw LogToolError(
                .outOfRange,
                "index \(to) is before the snapshot at \(start), the oldest state \(directory.path) can rebuild")
        }
        if to > storage.lastIndex {
            throw LogToolError(
                .outOfRange, "index \(to) is beyond the last index \(storage.lastIndex) of \(directory.path)")
        }
        let machine: StateMachine
        var confState = ConfState()
        if start > 0 {
            let snapshot: (manifest: SnapshotManifest, data: [UInt8])?
            do {
                snapshot = try storage.readSnapshot()
            } catch {
                throw LogToolError(error)
            }
            guard let snapshot, snapshot.manifest.metadata.index == start else {
                // A running member took a new snapshot (and may have compacted) since the
                // directory was opened: this opening's view of the log no longer fits it.
                throw LogToolError(
                    .outOfRange,
                    "\(directory.path): the member replaced its snapshot at \(start) while the tool was reading; run the command again"
                )
            }
            do {
                // Empty data stands for an empty state machine as of the snapshot's index (a
                // member's bootstrap snapshot may be stored so, docs/engine.md).
                machine = snapshot.data.isEmpty ? try StateMachine() : try StateMachine(snapshot: snapshot.data)
            } catch {
                throw LogToolError(error, while: "restoring the snapshot at index \(start) of \(directory.path)")
            }
            guard snapshot.data.isEmpty || machine.appliedIndex == start else {
                throw LogToolError(
                    .corrupted,
                    "the snapshot stored for index \(start) holds the state as of index \(machine.appliedIndex)")
            }
            confState = snapshot.manifest.metadata.confState
        } else {
            do {
                machine = try StateMachine()
            } catch {
                throw LogToolError(error, while: "creating the state machine")
            }
        }
        self.machine = machine
        self.index = start
        self.startIndex = start
        self.confState = confState
        self.confStateKnown = start > 0
        self.entriesApplied = 0
        self.bytesRead = 0
        try advance(directory, through: to, progress: progress, observe: observe)
    }

    /// Applies the entries after `index` up to `target` (at most the last index of `directory`,
    /// which must be the directory this replay started from).
    package mutating func advance(
        _ directory: LogDirectory, through target: UInt64,
        progress: ((Int, Int) -> Void)? = nil,
        observe: ((Entry, StateMachine.AppliedEntry, Int) throws(LogToolError) -> Void)? = nil
    ) throws(LogToolError) {
        guard target > index else { return }
        let machine = self.machine
        var confState = self.confState
        let total = Int(target - index)
        var applied = 0
        var bytes = 0
        var changes: [(index: UInt64, change: ConfChange)] = []
        defer {
            self.membershipChanges += changes
            self.confState = confState
            self.entriesApplied += applied
            self.bytesRead += bytes
            self.index = machine.appliedIndex
        }
        // Entries are applied in page-table batches of `batchEntries` (one SQLite transaction
        // each, as the engine does per Raft Ready); the state reads the same in between.
        let batchEntries = 1024
        var inBatch = 0
        defer { try? machine.endBatch() }
        try directory.forEachEntry(from: index + 1, through: target) { (entry, size) throws(LogToolError) in
            let result: StateMachine.AppliedEntry
            do throws(StateMachineError) {
                if inBatch == 0 { try machine.beginBatch() }
                result = try machine.apply(entry)
                inBatch += 1
                if inBatch == batchEntries {
                    try machine.endBatch()
                    inBatch = 0
                }
            } catch {
                throw LogToolError(error, while: "applying entry \(entry.index)")
            }
            if entry.kind == .confChange, let (change, _) = MembershipRecord.decode(entry.data) {
                changes.append((entry.index, change))
                if let next = confState.applying(change) { confState = next }
                do throws(StateMachineError) {
                    try MembershipRecord.apply(entry, to: machine)
                } catch {
                    throw LogToolError(error, while: "recording the membership change of entry \(entry.index)")
                }
            }
            applied += 1
            bytes += size
            if let progress, applied & 4095 == 0 { progress(applied, total) }
            if let observe { try observe(entry, result, size) }
        }
        do throws(StateMachineError) {
            try machine.endBatch()
        } catch {
            throw LogToolError(error, while: "committing the page table's last batch")
        }
        progress?(applied, total)
    }

    /// The digests members compare to prove they hold the same state.
    package func digest() throws(LogToolError) -> StateMachineDigest {
        do {
            return try machine.canonicalDigest()
        } catch {
            throw LogToolError(error, while: "computing the digest at index \(index)")
        }
    }

    /// Runs read-only SQL against the replayed page table.
    package func query(_ sql: String, maxRows: Int = .max) throws(LogToolError) -> QueryResult {
        do {
            return try machine.pageTable.query(sql, maxRows: maxRows)
        } catch {
            throw LogToolError(error, while: "the query")
        }
    }

    /// Writes the heap image as of `index` to `path`: `heap_size` bytes, byte 0 at `heap_base`.
    package func export(toPath path: String) throws(LogToolError) {
        guard let heap = machine.heap else {
            throw LogToolError(
                .outOfRange, "at index \(index) the cluster is not bootstrapped yet: there is no heap to export")
        }
        do {
            try heap.export(toPath: path)
        } catch {
            throw LogToolError(.badArgument, "writing \(path): \(error.message)")
        }
    }
}
