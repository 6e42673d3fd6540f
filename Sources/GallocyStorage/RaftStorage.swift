import CLMDB
import GallocyCodec
import GallocyRaft
import Glibc
import Synchronization

/// A member's durable Raft state in its data directory: the log, the hard state (term, vote,
/// commit), the cluster settings, the membership, and snapshots. Stored in one LMDB environment
/// with the layout of `StorageLayout` (see docs/storage.md).
///
/// Durability: every mutating call is one LMDB write transaction, and so exactly one durable
/// sync; when it returns, what it wrote survives a crash of the process or the machine. The
/// host persists one `Ready` batch with one call to `persist(entries:hardState:settings:confState:)`.
///
/// Threads: any method may be called from any thread. Mutations are serialised; reads run
/// concurrently with them and with each other. The bounds (`firstIndex`, `lastIndex`, the hard
/// state) are kept in memory and updated after each commit.
///
/// Invariants that a call would break are refused with `StorageError.Code.invariantViolation`
/// before anything is written: the log stays contiguous from `compactedIndex + 1` to
/// `lastIndex`, terms never decrease along it, committed entries are never rewritten, and the
/// commit index never passes the last index.
package final class RaftStorage: Sendable {
    /// How to open a data directory.
    package struct Options: Sendable {
        /// The initial LMDB map size; it doubles whenever it fills up.
        package var mapSize: Int
        /// The LMDB map size past which writes fail with `StorageError.Code.full`.
        package var maxMapSize: Int
        /// The size of the chunks snapshots are stored in.
        package var snapshotChunkSize: Int
        /// Open without locking the directory and without writing anything: for offline tools,
        /// which may read the directory of a running member this way. What is read reflects the
        /// directory as of opening (`lastIndex` and the like are loaded once).
        package var readOnly: Bool

        package init(
            mapSize: Int = 64 << 20, maxMapSize: Int = 1 << 40, snapshotChunkSize: Int = 1 << 20, readOnly: Bool = false
        ) {
            self.mapSize = mapSize
            self.maxMapSize = maxMapSize
            self.snapshotChunkSize = snapshotChunkSize
            self.readOnly = readOnly
        }
    }

    /// What is kept in memory, replaced as a whole after each committed write.
    struct State: Sendable {
        var compaction = CompactionPoint.none
        var lastIndex: UInt64 = 0
        var lastTerm: UInt64 = 0
        var hardState = HardState.empty
        var settings: ClusterSettings?
        var confState = ConfState()
        var snapshot: SnapshotManifest?
        /// The id of the snapshot being written, if any; a newer `beginSnapshot` supersedes it.
        var snapshotInProgress: UInt64?
    }

    /// The data directory's path.
    package let path: String
    package let options: Options
    let environment: LMDBEnvironment
    let logDB: LMDBDatabase
    let metaDB: LMDBDatabase
    let snapshotDB: LMDBDatabase
    /// Held for the life of a writable opening; nil for read-only ones.
    private let directory: DataDirectory?
    /// Serialises mutations: each reads `state`, writes, and publishes the new state under it.
    private let writer = Mutex<Void>(())
    private let state: Mutex<State>

    /// Opens the data directory at `path`: creates and initialises it when missing or empty,
    /// otherwise checks that it is a Gallocy data directory of a layout this build reads, and
    /// loads its state. A writable opening takes the directory's lock first (see `DataDirectory`).
    package init(path: String, options: Options = Options()) throws(StorageError) {
        self.path = path
        self.options = options
        guard options.snapshotChunkSize > 0, options.snapshotChunkSize <= Int(UInt32.max / 2) else {
            throw StorageError(.invariantViolation, "snapshot chunk size \(options.snapshotChunkSize) is out of range")
        }
        if options.readOnly {
            var st = stat()
            guard stat(path + "/data.mdb", &st) == 0 else {
                throw StorageError(.notFound, "\(path) is not a Gallocy data directory (it has no data.mdb)")
            }
            directory = nil
        } else {
            directory = try DataDirectory(path: path)
        }
        let configuration = LMDBEnvironment.Configuration(
            mapSize: options.mapSize, maxMapSize: options.maxMapSize, maxDatabases: 4, readOnly: options.readOnly)
        let context = "opening the data directory \(path)"
        do {
            environment = try LMDBEnvironment(path: path, configuration: configuration)
            let create = !options.readOnly
            logDB = try environment.openDatabase(StorageLayout.logDatabase, create: create)
            metaDB = try environment.openDatabase(StorageLayout.metaDatabase, create: create)
            snapshotDB = try environment.openDatabase(StorageLayout.snapshotDatabase, create: create)
        } catch let error where error.code == MDB_NOTFOUND {
            throw StorageError(
                .notFound, "\(path) is not a Gallocy data directory: \(error.context)", lmdbCode: error.code)
        } catch {
            throw StorageError(StorageError(error).code, "\(context): \(error.description)", lmdbCode: error.code)
        }
        try Self.checkFormat(environment, metaDB, logDB, path: path, initialise: !options.readOnly)
        state = Mutex(try Self.loadState(environment, logDB, metaDB, snapshotDB, path: path))
    }

    /// Checks the `format` record, writing it into a new directory.
    private static func checkFormat(
        _ env: LMDBEnvironment, _ meta: LMDBDatabase, _ log: LMDBDatabase, path: String, initialise: Bool
    ) throws(StorageError) {
        func check(_ txn: borrowing LMDBTransaction) throws -> Bool {
            guard let raw = try txn.get(StorageLayout.formatKey, in: meta) else {
                guard try txn.count(in: meta) == 0, try txn.count(in: log) == 0 else {
                    throw StorageError(
                        .corrupted,
                        "\(path) holds data but no format record: it is damaged or not a Gallocy data directory")
                }
                return false
            }
            let version: UInt16
            do {
                version = try StorageRecordCodec.decodeFormat(raw)
            } catch {
                throw StorageError(.corrupted, "the format record of \(path) is damaged: \(error)")
            }
            guard version == StorageLayout.layoutVersion else {
                throw StorageError(
                    .unsupportedVersion,
                    "\(path) has storage layout version \(version); this build reads version \(StorageLayout.layoutVersion)"
                )
            }
            return true
        }
        try storageOperation("checking the format of \(path)") {
            if try env.read({ txn in try check(txn) }) { return }
            guard initialise else {
                throw StorageError(.notFound, "\(path) is not a Gallocy data directory (it has no format record)")
            }
            try env.write { txn in
                if try check(txn) { return }
                try txn.put(
                    StorageRecordCodec.encodeFormat(layoutVersion: StorageLayout.layoutVersion),
                    forKey: StorageLayout.formatKey, in: meta)
            }
        }
    }

    private static func loadState(
        _ env: LMDBEnvironment, _ log: LMDBDatabase, _ meta: LMDBDatabase, _ snapshots: LMDBDatabase, path: String
    ) throws(StorageError) -> State {
        try storageOperation("loading the state of \(path)") {
            try env.read { txn in
                var s = State()
                if let raw = try txn.get(StorageLayout.compactionKey, in: meta) {
                    s.compaction = try decodeMeta("compaction point") { () throws(CodecError) in
                        try StorageRecordCodec.decodeCompactionPoint(raw)
                    }
                }
                if let raw = try txn.get(StorageLayout.hardStateKey, in: meta) {
                    s.hardState = try decodeMeta("hard state") { () throws(CodecError) in
                        try StorageRecordCodec.decodeHardState(raw)
                    }
                }
                if let raw = try txn.get(StorageLayout.settingsKey, in: meta) {
                    s.settings = try decodeMeta("cluster settings") { () throws(CodecError) in
                        try StorageRecordCodec.decodeSettings(raw)
                    }
                }
                if let raw = try txn.get(StorageLayout.confStateKey, in: meta) {
                    s.confState = try decodeMeta("conf state") { () throws(CodecError) in
                        try StorageRecordCodec.decodeConfState(raw)
                    }
                }
                (s.lastIndex, s.lastTerm) = (s.compaction.index, s.compaction.term)
                if let last = try txn.withCursor(
                    on: log, { cursor in try cursor.last().map { (Array($0.key), Array($0.value)) } })
                {
                    guard let index = last.0.withUnsafeBytes({ StorageLayout.logIndex($0) }) else {
                        throw StorageError(
                            .corrupted, "the last key of the log is \(last.0.count) bytes, not an 8-byte index")
                    }
                    s.lastIndex = index
                    s.lastTerm = try last.1.withUnsafeBytes { raw in
                        try decodeMeta("log entry \(index)") { () throws(CodecError) in try EntryCodec.term(of: raw) }
                    }
                }
                if let raw = try txn.get(StorageLayout.snapshotPointerKey, in: meta) {
                    let pointer = try decodeMeta("snapshot pointer") { () throws(CodecError) in
                        try StorageRecordCodec.decodeSnapshotPointer(raw)
                    }
                    guard let manifestRaw = try txn.get(StorageLayout.manifestKey(snapshot: pointer.id), in: snapshots)
                    else {
                        throw StorageError(
                            .corrupted, "the manifest of snapshot \(pointer.id) (index \(pointer.index)) is missing")
                    }
                    let manifest = try decodeMeta("snapshot \(pointer.id) manifest") { () throws(CodecError) in
                        try StorageRecordCodec.decodeManifest(manifestRaw)
                    }
                    guard manifest.id == pointer.id, manifest.metadata.index == pointer.index,
                        manifest.metadata.term == pointer.term
                    else {
                        throw StorageError(
                            .corrupted, "the manifest of snapshot \(pointer.id) does not match the snapshot pointer")
                    }
                    s.snapshot = manifest
                }
                return s
            }
        }
    }

    private static func decodeMeta<T>(_ what: String, _ body: () throws(CodecError) -> T) throws(StorageError) -> T {
        do {
            return try body()
        } catch {
            throw StorageError(.corrupted, "\(what) is damaged: \(error.message) (run `gallocy log verify`)")
        }
    }

    // MARK: reading

    private var snapshotOfState: State { state.withLock { $0 } }

    /// The first index still in the log: one past the compacted index.
    package var firstIndex: UInt64 { state.withLock { $0.compaction.index + 1 } }
    /// The last index in the log; `compactedIndex` when the log holds no entry.
    package var lastIndex: UInt64 { state.withLock { $0.lastIndex } }
    /// The term of the entry at `lastIndex`.
    package var lastTerm: UInt64 { state.withLock { $0.lastTerm } }
    /// The index of the last entry removed by compaction or replaced by a snapshot (0 if none).
    package var compactedIndex: UInt64 { state.withLock { $0.compaction.index } }
    /// The term of the entry at `compactedIndex`.
    package var compactedTerm: UInt64 { state.withLock { $0.compaction.term } }
    /// The last hard state persisted (`HardState.empty` for a new directory).
    package var hardState: HardState { state.withLock { $0.hardState } }
    /// The cluster settings persisted at bootstrap, if any.
    package var settings: ClusterSettings? { state.withLock { $0.settings } }
    /// The membership last persisted.
    package var confState: ConfState { state.withLock { $0.confState } }
    /// The bytes of `data.mdb` in use and the current LMDB map size, for metrics.
    package var diskUsage: (usedBytes: Int, mapSize: Int) { (environment.usedBytes, environment.mapSize) }
    /// The manifest of the snapshot in force, if any.
    package var snapshot: SnapshotManifest? { state.withLock { $0.snapshot } }

    /// The term of the entry at `index`. Answers for `compactedIndex` too (the term is kept when
    /// the entry is compacted away); throws `.compacted` below it and `.unavailable` past
    /// `lastIndex`.
    package func term(at index: UInt64) throws(StorageError) -> UInt64 {
        let (compaction, last, lastTerm) = state.withLock { ($0.compaction, $0.lastIndex, $0.lastTerm) }
        if index == compaction.index { return compaction.term }
        if index == last { return lastTerm }
        try checkBounds(index, compaction: compaction, last: last)
        return try storageOperation("reading the term of entry \(index)") {
            try environment.read { txn in
                if let raw = try txn.get(StorageLayout.logKey(index), in: logDB) {
                    do { return try EntryCodec.term(of: raw) } catch {
                        throw StorageError(.corrupted, "log entry \(index) is damaged: \(error)")
                    }
                }
                // Not in this snapshot of the log: a concurrent compaction or truncation moved the
                // bounds since they were read above. Judge by the bounds of this same snapshot.
                let (compaction, last) = try self.logBounds(txn)
                if index == compaction.index { return compaction.term }
                try self.checkBounds(index, compaction: compaction, last: last)
                throw StorageError(
                    .corrupted,
                    "log entry \(index) is missing although the log runs from \(compaction.index + 1) to \(last)")
            }
        }
    }

    /// The compaction point and last index as seen by `txn` (the in-memory copies may be newer
    /// or older than a read transaction's snapshot).
    private func logBounds(_ txn: borrowing LMDBTransaction) throws -> (CompactionPoint, UInt64) {
        var compaction = CompactionPoint.none
        if let raw = try txn.get(StorageLayout.compactionKey, in: metaDB) {
            compaction = try StorageRecordCodec.decodeCompactionPoint(raw)
        }
        let lastKey = try txn.withCursor(on: logDB) { cursor in try cursor.last().map { Array($0.key) } }
        let last = lastKey.flatMap { key in key.withUnsafeBytes { StorageLayout.logIndex($0) } }
        return (compaction, last ?? compaction.index)
    }

    private func checkBounds(_ index: UInt64, compaction: CompactionPoint, last: UInt64) throws(StorageError) {
        if index < compaction.index {
            throw StorageError(
                .compacted, "log entry \(index) was compacted (the log now starts at \(compaction.index + 1))")
        }
        if index > last {
            throw StorageError(.unavailable, "log entry \(index) is beyond the last index \(last)")
        }
    }

    /// The entries with indices in `lo..<hi`, in order, decoded and checksum-verified.
    ///
    /// With `maxBytes`, stops before the entry that would take the total stored size past it,
    /// but always returns at least one entry when the range is not empty (so a caller with a
    /// small budget still makes progress). Throws `.compacted` when `lo` is at or below the
    /// compacted index, `.unavailable` when `hi` is past `lastIndex + 1`.
    package func entries(from lo: UInt64, to hi: UInt64, maxBytes: Int = .max) throws(StorageError) -> [Entry] {
        try storedEntries(from: lo, to: hi, maxBytes: maxBytes).map(\.entry)
    }

    /// Calls `body` with every entry in `lo..<hi` in order, and the size of its stored (encoded)
    /// form, reading about `batchBytes` per read transaction: for walking a long log (the log
    /// tool's dump and replay) without holding it all in memory or one transaction open long.
    /// `body` runs outside any transaction and may call this storage. Throws what `entries`
    /// throws, or what `body` throws.
    package func forEachEntry(
        from lo: UInt64, to hi: UInt64, batchBytes: Int = 4 << 20,
        _ body: (_ entry: Entry, _ storedSize: Int) throws -> Void
    ) throws {
        var next = lo
        while next < hi {
            let batch = try storedEntries(from: next, to: hi, maxBytes: batchBytes)
            for (entry, size) in batch { try body(entry, size) }
            next += UInt64(batch.count)
        }
    }

    /// An entry and the size of its stored form.
    private typealias StoredEntry = (entry: Entry, size: Int)

    private func storedEntries(from lo: UInt64, to hi: UInt64, maxBytes: Int) throws(StorageError) -> [StoredEntry] {
        guard lo <= hi else {
            throw StorageError(.invariantViolation, "entries(from: \(lo), to: \(hi)): the range is reversed")
        }
        guard lo < hi else { return [] }
        let s = snapshotOfState
        if lo <= s.compaction.index {
            throw StorageError(
                .compacted, "log entry \(lo) was compacted (the log now starts at \(s.compaction.index + 1))")
        }
        if hi - 1 > s.lastIndex {
            throw StorageError(.unavailable, "log entry \(hi - 1) is beyond the last index \(s.lastIndex)")
        }
        return try storageOperation("reading log entries \(lo)..<\(hi)") {
            try environment.read { txn in
                // nil: an index of the range is not in this snapshot of the log.
                let found = try txn.withCursor(on: logDB) { cursor -> [StoredEntry]? in
                    var entries: [StoredEntry] = []
                    var bytes = 0
                    var expected = lo
                    var item = try cursor.seek(atLeast: StorageLayout.logKey(lo))
                    while expected < hi {
                        guard let (key, value) = item, StorageLayout.logIndex(key) == expected else { return nil }
                        bytes += value.count
                        if !entries.isEmpty && bytes > maxBytes { break }
                        let entry: Entry
                        do { entry = try EntryCodec.decode(value) } catch {
                            throw StorageError(.corrupted, "log entry \(expected) is damaged: \(error)")
                        }
                        guard entry.index == expected else {
                            throw StorageError(
                                .corrupted, "the log entry stored at index \(expected) says it is entry \(entry.index)")
                        }
                        entries.append((entry, value.count))
                        expected += 1
                        item = try cursor.next()
                    }
                    return entries
                }
                if let found { return found }
                // A concurrent compaction or truncation moved the bounds since they were read
                // above. Judge by the bounds of this same snapshot.
                let (compaction, last) = try self.logBounds(txn)
                if lo <= compaction.index {
                    throw StorageError(
                        .compacted, "log entry \(lo) was compacted (the log now starts at \(compaction.index + 1))")
                }
                if hi - 1 > last {
                    throw StorageError(.unavailable, "log entry \(hi - 1) is beyond the last index \(last)")
                }
                throw StorageError(
                    .corrupted, "the log has a gap between \(lo) and \(hi) (run `gallocy log verify`)")
            }
        }
    }

    /// The entry at `index`.
    package func entry(at index: UInt64) throws(StorageError) -> Entry {
        let found = try entries(from: index, to: index &+ 1)
        guard let entry = found.first else { throw StorageError(.unavailable, "log entry \(index) is not stored") }
        return entry
    }

    // MARK: writing

    /// Persists one `Ready` batch in ONE write transaction, with ONE durable sync: appends
    /// `entries` (an entry at index i replaces the entry at i and everything after it), and
    /// stores the hard state, cluster settings and membership that are given. When it returns,
    /// all of it is durable; after a crash, either all of it or none of it is there.
    ///
    /// Entries at or below the persisted commit index are accepted only when they match the
    /// stored ones (same term), and are then skipped; a different term there is refused.
    package func persist(
        entries: [Entry] = [], hardState: HardState? = nil, settings: ClusterSettings? = nil,
        confState: ConfState? = nil
    ) throws(StorageError) {
        if entries.isEmpty && hardState == nil && settings == nil && confState == nil { return }
        for k in entries.indices.dropFirst() where entries[k].index != entries[k - 1].index &+ 1 {
            throw StorageError(
                .invariantViolation,
                "entries to append are not contiguous: entry \(entries[k].index) follows entry \(entries[k - 1].index)")
        }
        try mutate("persisting \(entries.count) entries") { current, txn in
            var next = current
            if !entries.isEmpty { try self.append(entries, in: txn, to: &next) }
            if let hardState {
                guard hardState.commit <= next.lastIndex else {
                    throw StorageError(
                        .invariantViolation,
                        "hard state commit \(hardState.commit) is beyond the last log index \(next.lastIndex)")
                }
                guard hardState.commit >= next.compaction.index else {
                    throw StorageError(
                        .invariantViolation,
                        "hard state commit \(hardState.commit) is below the compacted index \(next.compaction.index)")
                }
                try txn.put(StorageRecordCodec.encode(hardState), forKey: StorageLayout.hardStateKey, in: self.metaDB)
                next.hardState = hardState
            }
            if let settings {
                try txn.put(StorageRecordCodec.encode(settings), forKey: StorageLayout.settingsKey, in: self.metaDB)
                next.settings = settings
            }
            if let confState {
                try txn.put(StorageRecordCodec.encode(confState), forKey: StorageLayout.confStateKey, in: self.metaDB)
                next.confState = confState
            }
            return next
        }
    }

    /// Appends `entries` (see `persist`): one transaction, one sync.
    package func append(_ entries: [Entry]) throws(StorageError) {
        try persist(entries: entries)
    }

    /// Stores the hard state alone: one transaction, one sync.
    package func setHardState(_ hardState: HardState) throws(StorageError) {
        try persist(hardState: hardState)
    }

    private func append(_ entries: [Entry], in txn: borrowing LMDBTransaction, to next: inout State) throws {
        // Entries the log already has committed must match; they are skipped, never rewritten.
        var start = 0
        while start < entries.count, entries[start].index <= next.hardState.commit {
            let entry = entries[start]
            if entry.index >= next.compaction.index {
                let stored = try termInTransaction(entry.index, txn, next)
                guard stored == entry.term else {
                    throw StorageError(
                        .invariantViolation,
                        "entry \(entry.index) of term \(entry.term) would replace a committed entry of term \(stored)")
                }
            }
            start += 1
        }
        let fresh = entries[start...]
        guard let first = fresh.first, let last = fresh.last else { return }
        guard first.index > next.compaction.index else {
            throw StorageError(
                .invariantViolation, "entry \(first.index) is at or below the compacted index \(next.compaction.index)")
        }
        guard first.index <= next.lastIndex + 1 else {
            throw StorageError(
                .invariantViolation, "entry \(first.index) would leave a gap after the last index \(next.lastIndex)")
        }
        let previousTerm = try termInTransaction(first.index - 1, txn, next)
        var term = previousTerm
        for entry in fresh {
            guard entry.term >= term else {
                throw StorageError(
                    .invariantViolation,
                    "entry \(entry.index) has term \(entry.term), below the term \(term) of the entry before it")
            }
            term = entry.term
        }
        if first.index <= next.lastIndex {
            try deleteLog(from: first.index, through: .max, txn)
        }
        for entry in fresh {
            try txn.put(EntryCodec.encode(entry), forKey: StorageLayout.logKey(entry.index), in: logDB, append: true)
        }
        next.lastIndex = last.index
        next.lastTerm = last.term
    }

    /// The term at `index` as seen by `txn`, for an index from `compactedIndex` to `lastIndex`.
    func termInTransaction(_ index: UInt64, _ txn: borrowing LMDBTransaction, _ s: State) throws -> UInt64 {
        if index == s.compaction.index { return s.compaction.term }
        if index == s.lastIndex { return s.lastTerm }
        guard let raw = try txn.get(StorageLayout.logKey(index), in: logDB) else {
            throw StorageError(
                .corrupted,
                "log entry \(index) is missing although the log runs from \(s.compaction.index + 1) to \(s.lastIndex)")
        }
        do { return try EntryCodec.term(of: raw) } catch {
            throw StorageError(.corrupted, "log entry \(index) is damaged: \(error)")
        }
    }

    /// Deletes the log entries with indices in `lo...hi`.
    func deleteLog(from lo: UInt64, through hi: UInt64, _ txn: borrowing LMDBTransaction) throws {
        try txn.withCursor(on: logDB) { cursor in
            var item = try cursor.seek(atLeast: StorageLayout.logKey(lo))
            while let (key, _) = item, let index = StorageLayout.logIndex(key), index <= hi {
                try cursor.deleteCurrent()
                item = try cursor.next()
            }
        }
    }

    /// Removes the entries up to and including `index` from the log, remembering its term so
    /// that `term(at: index)` still answers; the log then starts at `index + 1`. Only entries
    /// that are committed (persisted commit index) may be compacted. Compacting at or below the
    /// compacted index does nothing.
    package func compact(through index: UInt64) throws(StorageError) {
        try mutate("compacting the log through \(index)") { current, txn in
            guard index > current.compaction.index else { return current }
            guard index <= current.lastIndex else {
                throw StorageError(
                    .unavailable, "cannot compact through \(index): the last index is \(current.lastIndex)")
            }
            guard index <= current.hardState.commit else {
                throw StorageError(
                    .invariantViolation,
                    "cannot compact through \(index): only entries up to the commit index \(current.hardState.commit) may be compacted"
                )
            }
            var next = current
            next.compaction = CompactionPoint(index: index, term: try self.termInTransaction(index, txn, current))
            try self.deleteLog(from: current.compaction.index + 1, through: index, txn)
            try txn.put(
                StorageRecordCodec.encode(next.compaction), forKey: StorageLayout.compactionKey, in: self.metaDB)
            return next
        }
    }

    /// Runs one mutation: reads the state, runs `body` in a write transaction (which may run
    /// more than once, see `LMDBEnvironment.write`), and publishes the state it returns once
    /// the transaction is durable.
    func mutate(_ context: @autoclosure () -> String, _ body: (State, borrowing LMDBTransaction) throws -> State)
        throws(StorageError)
    {
        guard !options.readOnly else { throw StorageError(.readOnly, "\(context()): \(path) is open read-only") }
        try storageOperation(context()) {
            try writer.withLock { _ in
                let current = state.withLock { $0 }
                let next = try environment.write { txn in try body(current, txn) }
                state.withLock { $0 = next }
            }
        }
    }
}
