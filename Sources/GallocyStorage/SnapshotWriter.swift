import GallocyCodec
import GallocyRaft

/// Writes one snapshot into a `RaftStorage`, obtained from `RaftStorage.beginSnapshot(_:)`.
///
/// Bytes are cut into chunks of `RaftStorage.Options.snapshotChunkSize`, each stored with its
/// CRC32C under a key of this snapshot's own id; chunks are written in transactions of several
/// chunks at a time as they fill. `finish(replacingLog:)` writes the last chunk, then the
/// manifest and the switch of the snapshot pointer in one synced transaction of their own, and
/// only then deletes the previous snapshot. A crash at any point before the manifest leaves the
/// previous snapshot in force, whole and readable; the unfinished chunks are removed by the next
/// `beginSnapshot`.
///
/// Use from one thread at a time. Beginning another snapshot supersedes this one: its `finish`
/// then fails.
package final class SnapshotWriter {
    /// The storage-local id the chunks are written under.
    package let id: UInt64
    package let metadata: SnapshotMetadata
    private let storage: RaftStorage
    private let chunkSize: Int
    /// Chunks written per transaction: about 8 MiB, so that a large snapshot does not become
    /// one huge transaction, nor one sync per chunk.
    private let chunksPerTransaction: Int
    private var pending: [UInt8] = []
    private var chunksWritten: UInt32 = 0
    private var totalSize: UInt64 = 0
    private var checksum: UInt32 = 0
    private var finished = false

    init(storage: RaftStorage, id: UInt64, metadata: SnapshotMetadata, chunkSize: Int) {
        self.storage = storage
        self.id = id
        self.metadata = metadata
        self.chunkSize = chunkSize
        chunksPerTransaction = max(1, (8 << 20) / chunkSize)
        pending.reserveCapacity(min(chunkSize * chunksPerTransaction, 64 << 20))
    }

    /// Adds bytes to the snapshot.
    package func write(_ bytes: UnsafeRawBufferPointer) throws(StorageError) {
        guard !finished else { throw StorageError(.invariantViolation, "snapshot \(id) was already finished") }
        guard (totalSize + UInt64(bytes.count)) / UInt64(chunkSize) < UInt64(UInt32.max) else {
            throw StorageError(
                .invariantViolation, "snapshot \(id) would need more than 2^32 chunks of \(chunkSize) bytes")
        }
        pending.append(contentsOf: bytes)
        totalSize += UInt64(bytes.count)
        checksum = CRC32C.checksum(bytes, continuing: checksum)
        if pending.count >= chunkSize * chunksPerTransaction { try flush() }
    }

    /// Adds bytes to the snapshot.
    package func write(_ bytes: [UInt8]) throws(StorageError) {
        try withRawBytes(bytes) { raw throws(StorageError) in try write(raw) }
    }

    /// Writes every complete chunk buffered so far (one synced transaction); the partial last
    /// chunk stays buffered until more bytes or `finish` complete it.
    package func flush() throws(StorageError) {
        try flush(includingPartial: false)
    }

    private func flush(includingPartial: Bool) throws(StorageError) {
        let complete = pending.count / chunkSize
        let count = includingPartial && pending.count % chunkSize != 0 ? complete + 1 : complete
        guard count > 0 else { return }
        let used = min(count * chunkSize, pending.count)
        try pending.withUnsafeBytes { raw in
            Result { () throws(StorageError) in
                // A transaction per group of chunks, however much one write(_:) call handed over.
                for group in stride(from: 0, to: count, by: chunksPerTransaction) {
                    var chunks: [[UInt8]] = []
                    for k in group..<min(group + chunksPerTransaction, count) {
                        let range = k * chunkSize..<min((k + 1) * chunkSize, used)
                        chunks.append(
                            StorageRecordCodec.encodeChunk(
                                snapshot: id, number: chunksWritten + UInt32(k),
                                payload: UnsafeRawBufferPointer(rebasing: raw[range])))
                    }
                    try storage.storeSnapshotChunks(chunks, snapshot: id, firstNumber: chunksWritten + UInt32(group))
                }
            }
        }.get()
        chunksWritten += UInt32(count)
        pending.removeFirst(used)
    }

    /// Writes the remaining bytes and the manifest, making this the snapshot in force, then
    /// deletes the previous snapshot.
    ///
    /// - Parameter replacingLog: for a snapshot received from the leader: in the same
    ///   transaction as the manifest, the log is reset to start after the snapshot (entries up to
    ///   its index go; later ones stay only if the log has the snapshot's last entry with the
    ///   same term), the membership becomes the snapshot's, and the commit index rises to the
    ///   snapshot's index. Without it (a snapshot of this member's own applied state), the log
    ///   is left alone; compact it with `RaftStorage.compact(through:)`.
    @discardableResult
    package func finish(replacingLog: Bool = false) throws(StorageError) -> SnapshotManifest {
        guard !finished else { throw StorageError(.invariantViolation, "snapshot \(id) was already finished") }
        try flush(includingPartial: true)
        let manifest = SnapshotManifest(
            id: id, metadata: metadata, totalSize: totalSize, chunkSize: UInt32(chunkSize), chunkCount: chunksWritten,
            checksum: checksum)
        try storage.commitSnapshot(manifest, replacingLog: replacingLog)
        finished = true
        return manifest
    }
}
