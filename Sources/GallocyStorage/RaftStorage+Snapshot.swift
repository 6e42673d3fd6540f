import GallocyCodec
import GallocyRaft

extension RaftStorage {
    /// Starts writing a snapshot that stands for `metadata`. Removes what unfinished snapshot
    /// writes left behind (one synced transaction) and supersedes any writer still open.
    package func beginSnapshot(_ metadata: SnapshotMetadata) throws(StorageError) -> SnapshotWriter {
        var id: UInt64 = 0
        try mutate("beginning a snapshot at index \(metadata.index)") { current, txn in
            let keep = current.snapshot?.id
            var highest = max(keep ?? 0, current.snapshotInProgress ?? 0)
            try txn.withCursor(on: self.snapshotDB) { cursor in
                var item = try cursor.first()
                while let (key, _) = item {
                    let owner = StorageLayout.snapshotID(ofKey: key)
                    highest = max(highest, owner ?? 0)
                    if owner != keep { try cursor.deleteCurrent() }
                    item = try cursor.next()
                }
            }
            var next = current
            id = highest + 1
            next.snapshotInProgress = id
            return next
        }
        return SnapshotWriter(storage: self, id: id, metadata: metadata, chunkSize: options.snapshotChunkSize)
    }

    /// Writes a whole snapshot and makes it the one in force (see `SnapshotWriter`).
    @discardableResult
    package func saveSnapshot(_ metadata: SnapshotMetadata, data: [UInt8], replacingLog: Bool = false)
        throws(StorageError) -> SnapshotManifest
    {
        let writer = try beginSnapshot(metadata)
        try writer.write(data)
        return try writer.finish(replacingLog: replacingLog)
    }

    func storeSnapshotChunks(_ chunks: [[UInt8]], snapshot id: UInt64, firstNumber: UInt32) throws(StorageError) {
        try mutate("writing chunks of snapshot \(id)") { current, txn in
            guard current.snapshotInProgress == id else {
                throw StorageError(.invariantViolation, "snapshot \(id) was superseded by a newer snapshot write")
            }
            for (k, chunk) in chunks.enumerated() {
                try txn.put(
                    chunk, forKey: StorageLayout.chunkKey(snapshot: id, chunk: firstNumber + UInt32(k)),
                    in: self.snapshotDB)
            }
            return current
        }
    }

    func commitSnapshot(_ manifest: SnapshotManifest, replacingLog: Bool) throws(StorageError) {
        let m = manifest.metadata
        var previous: UInt64?
        try mutate("committing snapshot \(manifest.id) at index \(m.index)") { current, txn in
            guard current.snapshotInProgress == manifest.id else {
                throw StorageError(
                    .invariantViolation, "snapshot \(manifest.id) was superseded by a newer snapshot write")
            }
            if let existing = current.snapshot, m.index < existing.metadata.index {
                throw StorageError(
                    .invariantViolation,
                    "snapshot at index \(m.index) is older than the one in force at \(existing.metadata.index)")
            }
            var next = current
            if replacingLog {
                guard m.index > current.compaction.index else {
                    throw StorageError(
                        .invariantViolation,
                        "snapshot at index \(m.index) is not past the compacted index \(current.compaction.index)")
                }
                let keepsSuffix =
                    try m.index <= current.lastIndex && self.termInTransaction(m.index, txn, current) == m.term
                if keepsSuffix {
                    try self.deleteLog(from: current.compaction.index + 1, through: m.index, txn)
                } else {
                    try txn.removeAll(in: self.logDB)
                    next.lastIndex = m.index
                    next.lastTerm = m.term
                }
                next.compaction = CompactionPoint(index: m.index, term: m.term)
                next.confState = m.confState
                next.hardState.commit = max(current.hardState.commit, m.index)
                try txn.put(
                    StorageRecordCodec.encode(next.compaction), forKey: StorageLayout.compactionKey, in: self.metaDB)
                try txn.put(
                    StorageRecordCodec.encode(next.confState), forKey: StorageLayout.confStateKey, in: self.metaDB)
                try txn.put(
                    StorageRecordCodec.encode(next.hardState), forKey: StorageLayout.hardStateKey, in: self.metaDB)
            }
            try txn.put(
                StorageRecordCodec.encode(manifest), forKey: StorageLayout.manifestKey(snapshot: manifest.id),
                in: self.snapshotDB)
            let pointer = SnapshotPointer(id: manifest.id, index: m.index, term: m.term)
            try txn.put(StorageRecordCodec.encode(pointer), forKey: StorageLayout.snapshotPointerKey, in: self.metaDB)
            previous = current.snapshot?.id
            next.snapshot = manifest
            next.snapshotInProgress = nil
            return next
        }
        // The new snapshot is durable: the old one may go. If this fails or the process dies
        // here, the next beginSnapshot removes it.
        if let previous {
            try mutate("deleting snapshot \(previous)") { current, txn in
                try self.deleteSnapshotKeys(previous, txn)
                return current
            }
        }
    }

    private func deleteSnapshotKeys(_ id: UInt64, _ txn: borrowing LMDBTransaction) throws {
        try txn.withCursor(on: snapshotDB) { cursor in
            var item = try cursor.seek(atLeast: StorageLayout.chunkKey(snapshot: id, chunk: 0))
            while let (key, _) = item, key.first == StorageLayout.chunkTag, StorageLayout.snapshotID(ofKey: key) == id {
                try cursor.deleteCurrent()
                item = try cursor.next()
            }
        }
        try txn.delete(StorageLayout.manifestKey(snapshot: id), in: snapshotDB)
    }

    /// The snapshot in force, read whole and verified (every chunk's checksum, the sizes, the
    /// checksum of the whole); nil when there is none.
    package func readSnapshot() throws(StorageError) -> (manifest: SnapshotManifest, data: [UInt8])? {
        try storageOperation("reading the snapshot") {
            try environment.read { txn -> (manifest: SnapshotManifest, data: [UInt8])? in
                guard let manifest = try self.currentManifest(txn) else { return nil }
                var data: [UInt8] = []
                data.reserveCapacity(Int(clamping: manifest.totalSize))
                for number in 0..<manifest.chunkCount {
                    try self.withChunk(number, of: manifest, txn) { data.append(contentsOf: $0) }
                }
                let crc = CRC32C.checksum(data)
                guard crc == manifest.checksum else {
                    throw StorageError(
                        .corrupted, "snapshot \(manifest.id): the checksum of the whole does not match its manifest")
                }
                return (manifest, data)
            }
        }
    }

    /// The payload of chunk `number` of the snapshot `manifest` describes, verified. Throws
    /// `.notFound` when that snapshot has been replaced since.
    package func readSnapshotChunk(_ number: UInt32, of manifest: SnapshotManifest) throws(StorageError) -> [UInt8] {
        try storageOperation("reading chunk \(number) of snapshot \(manifest.id)") {
            try environment.read { txn in
                guard number < manifest.chunkCount else {
                    throw StorageError(
                        .unavailable, "snapshot \(manifest.id) has \(manifest.chunkCount) chunks, not \(number + 1)")
                }
                if try txn.get(StorageLayout.manifestKey(snapshot: manifest.id), in: self.snapshotDB) == nil {
                    throw StorageError(
                        .notFound, "snapshot \(manifest.id) at index \(manifest.metadata.index) was replaced")
                }
                return try self.withChunk(number, of: manifest, txn) { Array($0) }
            }
        }
    }

    func currentManifest(_ txn: borrowing LMDBTransaction) throws -> SnapshotManifest? {
        guard let raw = try txn.get(StorageLayout.snapshotPointerKey, in: metaDB) else { return nil }
        let pointer = try StorageRecordCodec.decodeSnapshotPointer(raw)
        guard let manifestRaw = try txn.get(StorageLayout.manifestKey(snapshot: pointer.id), in: snapshotDB) else {
            throw StorageError(.corrupted, "the manifest of snapshot \(pointer.id) (index \(pointer.index)) is missing")
        }
        return try StorageRecordCodec.decodeManifest(manifestRaw)
    }

    private func withChunk<R>(
        _ number: UInt32, of manifest: SnapshotManifest, _ txn: borrowing LMDBTransaction,
        _ body: (UnsafeRawBufferPointer) -> R
    ) throws -> R {
        guard let raw = try txn.get(StorageLayout.chunkKey(snapshot: manifest.id, chunk: number), in: snapshotDB) else {
            throw StorageError(.corrupted, "snapshot \(manifest.id) chunk \(number) is missing")
        }
        let payload = try StorageRecordCodec.decodeChunk(raw, snapshot: manifest.id, number: number)
        guard UInt64(payload.count) == manifest.expectedSize(ofChunk: number) else {
            throw StorageError(
                .corrupted,
                "snapshot \(manifest.id) chunk \(number) holds \(payload.count) bytes, its manifest says \(manifest.expectedSize(ofChunk: number))"
            )
        }
        return body(payload)
    }
}
