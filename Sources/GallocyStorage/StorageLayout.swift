/// Where things live in a Gallocy data directory's LMDB environment. See docs/storage.md.
///
/// - `log`: key = the entry's index as 8 bytes big-endian (so LMDB's byte order is index order),
///   value = the entry in `EntryCodec`'s format.
/// - `meta`: short ASCII keys (below), each value a small record of `StorageRecordCodec`.
/// - `snapshot`: chunks and manifests, keyed by a snapshot id that is never reused, so writing a
///   new snapshot never overwrites the one in force.
enum StorageLayout {
    static let logDatabase = "log"
    static let metaDatabase = "meta"
    static let snapshotDatabase = "snapshot"

    /// The format record: identifies a Gallocy data directory and its layout version.
    static let formatKey = Array("format".utf8)
    static let hardStateKey = Array("hard_state".utf8)
    static let settingsKey = Array("settings".utf8)
    static let confStateKey = Array("conf_state".utf8)
    /// The index and term of the last entry removed by compaction (0, 0 when none was).
    static let compactionKey = Array("compacted".utf8)
    /// Which snapshot is in force: its id, index and term.
    static let snapshotPointerKey = Array("snapshot".utf8)

    /// The layout version this build writes and reads.
    static let layoutVersion: UInt16 = 1

    static func logKey(_ index: UInt64) -> [UInt8] { bigEndian(index) }

    /// Decodes a `log` key; nil unless it is exactly 8 bytes.
    static func logIndex(_ key: UnsafeRawBufferPointer) -> UInt64? {
        guard key.count == 8 else { return nil }
        return key.reduce(0) { $0 << 8 | UInt64($1) }
    }

    static let chunkTag = UInt8(ascii: "c")
    static let manifestTag = UInt8(ascii: "m")

    /// `c` | snapshot id (u64 BE) | chunk number (u32 BE): a snapshot's chunks sort together, in order.
    static func chunkKey(snapshot id: UInt64, chunk: UInt32) -> [UInt8] {
        [chunkTag] + bigEndian(id) + bigEndian(UInt64(chunk)).suffix(4)
    }

    /// `m` | snapshot id (u64 BE).
    static func manifestKey(snapshot id: UInt64) -> [UInt8] { [manifestTag] + bigEndian(id) }

    /// The snapshot id of a `snapshot` database key, or nil when the key has another shape.
    static func snapshotID(ofKey key: UnsafeRawBufferPointer) -> UInt64? {
        guard (key.count == 13 && key[0] == chunkTag) || (key.count == 9 && key[0] == manifestTag) else { return nil }
        return key[1..<9].reduce(0) { $0 << 8 | UInt64($1) }
    }

    private static func bigEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) }
    }
}
