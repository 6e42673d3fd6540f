import GallocyRaft

/// The record that makes a stored snapshot exist: written last, in its own synced transaction,
/// after all of the snapshot's chunks. A snapshot without its manifest is an unfinished write and
/// is ignored (and removed by the next snapshot write).
package struct SnapshotManifest: Sendable, Hashable {
    /// The storage-local id of this snapshot; never reused, so chunks of different snapshots never
    /// share keys.
    package var id: UInt64
    /// The index, term and membership the snapshot stands for.
    package var metadata: SnapshotMetadata
    /// The size of the whole snapshot in bytes.
    package var totalSize: UInt64
    /// The size of every chunk but the last (which holds the remainder, and may be empty only
    /// when the snapshot is).
    package var chunkSize: UInt32
    package var chunkCount: UInt32
    /// CRC32C of the whole snapshot's bytes.
    package var checksum: UInt32

    package init(
        id: UInt64, metadata: SnapshotMetadata, totalSize: UInt64, chunkSize: UInt32, chunkCount: UInt32,
        checksum: UInt32
    ) {
        self.id = id
        self.metadata = metadata
        self.totalSize = totalSize
        self.chunkSize = chunkSize
        self.chunkCount = chunkCount
        self.checksum = checksum
    }

    /// The byte count chunk `number` must have.
    func expectedSize(ofChunk number: UInt32) -> UInt64 {
        let start = UInt64(number) * UInt64(chunkSize)
        return start >= totalSize ? 0 : min(UInt64(chunkSize), totalSize - start)
    }
}

/// The `meta` record naming the snapshot in force. Switched in the same transaction as the new
/// manifest is written, so a reader always finds a complete snapshot through it.
struct SnapshotPointer: Sendable, Hashable {
    var id: UInt64
    var index: UInt64
    var term: UInt64
}

/// The index and term of the last entry removed from the log by compaction or by installing a
/// snapshot. The log's first index is `index + 1`, and `term(at: index)` still answers `term`.
struct CompactionPoint: Sendable, Hashable {
    var index: UInt64
    var term: UInt64

    static let none = CompactionPoint(index: 0, term: 0)
}
