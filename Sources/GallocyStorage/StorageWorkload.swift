import GallocyCodec
import GallocyRaft

/// A deterministic stream of storage operations derived from a seed, shaped like a Raft host's:
/// batches of entries of random counts and sizes, sometimes replacing an uncommitted suffix with
/// entries of a new term, hard states whose term and commit move forward, and compactions.
///
/// The crash-safety test runs it in a child process (`gallocy internal append-child`) that it
/// kills at random instants, and recomputes it from the same seed to know exactly what the
/// directory must hold afterwards. The benchmark does not use it.
package struct StorageWorkload: Sendable {
    /// One operation, performed by one storage call (one transaction, one sync).
    package enum Step: Sendable, Hashable {
        case persist(entries: [Entry], hardState: HardState)
        case compact(through: UInt64)
        /// Write a snapshot of `size` bytes derived from `dataSeed`, in pieces with a flush after
        /// each (several transactions), then finish it.
        case snapshot(SnapshotModel, replacingLog: Bool)
    }

    /// A snapshot the workload wrote: its metadata and how to recompute its bytes.
    package struct SnapshotModel: Sendable, Hashable {
        package var metadata: SnapshotMetadata
        package var size: Int
        package var dataSeed: UInt64

        /// The snapshot's bytes.
        package var data: [UInt8] {
            var random = SplitMix64(seed: dataSeed)
            return random.bytes(size)
        }
    }

    /// The size of the pieces a snapshot is written in (each followed by a flush).
    package static let snapshotPiece = 100_000

    /// What the storage holds after the steps so far.
    package struct Model: Sendable, Hashable {
        /// The entries from `compactedIndex + 1` on.
        package var entries: [Entry] = []
        package var compactedIndex: UInt64 = 0
        package var compactedTerm: UInt64 = 0
        package var hardState = HardState.empty
        package var snapshot: SnapshotModel?

        package var lastIndex: UInt64 { compactedIndex + UInt64(entries.count) }
        package var lastTerm: UInt64 { entries.last?.term ?? compactedTerm }
    }

    private var random: SplitMix64
    package private(set) var model = Model()
    package private(set) var stepsTaken = 0

    package init(seed: UInt64) {
        random = SplitMix64(seed: seed)
    }

    /// The next step; `model` becomes the state after it.
    package mutating func next() -> Step {
        stepsTaken += 1
        let roll = random.below(100)
        let commit = model.hardState.commit
        if roll < 8 && commit > model.compactedIndex + 8 {
            let through = model.compactedIndex + 1 + random.below(commit - model.compactedIndex)
            let drop = Int(through - model.compactedIndex)
            model.compactedTerm = model.entries[drop - 1].term
            model.entries.removeFirst(drop)
            model.compactedIndex = through
            return .compact(through: through)
        }
        if roll >= 97 { return nextSnapshot() }
        var term = max(model.hardState.term, 1)
        var vote = model.hardState.vote
        var start = model.lastIndex + 1
        if roll < 23 && model.lastIndex > commit {
            start = commit + 1 + random.below(model.lastIndex - commit)
            term += 1
            vote = random.below(4)
        } else if roll < 30 {
            term += 1
            vote = random.below(4)
        }
        let countRoll = random.below(10)
        let count = 1 + Int(countRoll < 6 ? random.below(8) : countRoll < 9 ? random.below(64) : random.below(300))
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        for k in 0..<count {
            let sizeRoll = random.below(20)
            let size = Int(
                sizeRoll < 12
                    ? random.below(64)
                    : sizeRoll < 18 ? random.below(1024) : sizeRoll < 19 ? 4096 : 20_000 + random.below(50_000))
            entries.append(Entry(term: term, index: start + UInt64(k), data: random.bytes(size)))
        }
        let newLast = start + UInt64(count) - 1
        let hardState = HardState(term: term, vote: vote, commit: commit + random.below(newLast - commit + 1))
        model.entries.removeLast(Int(model.lastIndex + 1 - start))
        model.entries += entries
        model.hardState = hardState
        return .persist(entries: entries, hardState: hardState)
    }

    private mutating func nextSnapshot() -> Step {
        let size = Int(random.below(4) == 0 ? random.below(1000) : random.below(1_500_000))
        let dataSeed = random.next()
        let conf = ConfState(voters: [1, 2, 3])
        if random.below(3) == 0 && model.hardState.term > 0 {
            // As a follower installs a leader's snapshot: past the end of the log, replacing it.
            // The host has persisted the leader's term before (installing does not change it).
            let index = model.lastIndex + 1 + random.below(50)
            let term = model.hardState.term
            let snapshot = SnapshotModel(
                metadata: SnapshotMetadata(index: index, term: term, confState: conf), size: size, dataSeed: dataSeed)
            model.entries = []
            model.compactedIndex = index
            model.compactedTerm = term
            model.hardState.commit = index
            model.snapshot = snapshot
            return .snapshot(snapshot, replacingLog: true)
        }
        // As a member snapshots its own applied state: at or below the commit index.
        let low = max(model.snapshot?.metadata.index ?? 0, model.compactedIndex)
        let index = low + random.below(model.hardState.commit - low + 1)
        let term =
            index == model.compactedIndex
            ? model.compactedTerm : model.entries[Int(index - model.compactedIndex - 1)].term
        let snapshot = SnapshotModel(
            metadata: SnapshotMetadata(index: index, term: term, confState: conf), size: size, dataSeed: dataSeed)
        model.snapshot = snapshot
        return .snapshot(snapshot, replacingLog: false)
    }

    /// Performs `step` on `storage`.
    package static func perform(_ step: Step, on storage: RaftStorage) throws(StorageError) {
        switch step {
        case .persist(let entries, let hardState): try storage.persist(entries: entries, hardState: hardState)
        case .compact(let through): try storage.compact(through: through)
        case .snapshot(let snapshot, let replacingLog):
            let writer = try storage.beginSnapshot(snapshot.metadata)
            let data = snapshot.data
            for start in stride(from: 0, to: data.count, by: snapshotPiece) {
                try writer.write(Array(data[start..<min(start + snapshotPiece, data.count)]))
                try writer.flush()
            }
            try writer.finish(replacingLog: replacingLog)
        }
    }

    /// A checksum of what `step` writes, printed with each acknowledgement so the test can tell
    /// that it recomputed the same step.
    package static func checksum(of step: Step) -> UInt32 {
        var writer = ByteWriter()
        switch step {
        case .persist(let entries, let hardState):
            for entry in entries { EntryCodec.encode(entry, into: &writer) }
            writer.write(hardState.term)
            writer.write(hardState.vote)
            writer.write(hardState.commit)
        case .compact(let through):
            writer.write(through)
        case .snapshot(let snapshot, let replacingLog):
            writer.write(snapshot.metadata.index)
            writer.write(snapshot.metadata.term)
            writer.write(UInt64(snapshot.size))
            writer.write(snapshot.dataSeed)
            writer.write(replacingLog)
        }
        return CRC32C.checksum(writer.bytes)
    }

    /// Why `storage` does not hold exactly `model`, or nil when it does.
    package static func mismatch(between storage: RaftStorage, and model: Model) -> String? {
        if storage.hardState != model.hardState {
            return "hard state \(storage.hardState), expected \(model.hardState)"
        }
        if storage.compactedIndex != model.compactedIndex || storage.compactedTerm != model.compactedTerm {
            return
                "compacted at \(storage.compactedIndex)/\(storage.compactedTerm), expected \(model.compactedIndex)/\(model.compactedTerm)"
        }
        if storage.lastIndex != model.lastIndex {
            return "last index \(storage.lastIndex), expected \(model.lastIndex)"
        }
        if storage.snapshot?.metadata != model.snapshot?.metadata {
            return
                "snapshot \(String(describing: storage.snapshot?.metadata)), expected \(String(describing: model.snapshot?.metadata))"
        }
        if let expected = model.snapshot {
            do {
                guard let stored = try storage.readSnapshot(), stored.data == expected.data else {
                    return "the snapshot's bytes differ"
                }
            } catch {
                return "reading the snapshot failed: \(error)"
            }
        }
        do {
            let stored = try storage.entries(from: model.compactedIndex + 1, to: model.lastIndex + 1)
            if stored.count != model.entries.count { return "\(stored.count) entries, expected \(model.entries.count)" }
            if let k = stored.indices.first(where: { stored[$0] != model.entries[$0] }) {
                return "entry \(model.compactedIndex + 1 + UInt64(k)) differs"
            }
        } catch {
            return "reading the log failed: \(error)"
        }
        return nil
    }
}
