import GallocyRaft
import GallocyStorage
import Logging
import Synchronization

/// The Raft core's view of the member's LMDB store (`RaftStorage`). The core's reads cannot
/// throw, so a read error is logged, remembered in `failure` and reported through `onFailure`
/// (the driver then stops the member: it must never serve from a store it cannot read); the
/// core gets an empty answer meanwhile, which it treats as a compacted log.
///
/// Used only on the driver thread (the core calls it there); `RaftStorage` itself is thread-safe.
final class StorageLogReader: RaftLogReader {
    let storage: RaftStorage
    private let logger: Logger
    private let onFailure: (StorageError) -> Void
    private(set) var failure: StorageError?
    /// The last snapshot read, by manifest id: a leader sends the same snapshot to several
    /// followers and resends it, and reading it means reading and checking every chunk.
    private var cachedSnapshot: (id: UInt64, snapshot: Snapshot)?

    init(storage: RaftStorage, logger: Logger, onFailure: @escaping (StorageError) -> Void) {
        self.storage = storage
        self.logger = logger
        self.onFailure = onFailure
    }

    private func report(_ error: StorageError, _ what: String) {
        logger.critical("reading the data directory failed", metadata: ["reading": "\(what)", "error": "\(error)"])
        if failure == nil {
            failure = error
            onFailure(error)
        }
    }

    func initialState() -> (hardState: HardState, confState: ConfState) {
        // The membership as of the log's start. The engine keeps the log between the compaction
        // point and the snapshot free of membership changes (RaftDriver.takeSnapshot, and
        // Node.start repairs a crash between the two writes), so the snapshot's membership is
        // the one at the log's start. A store without snapshot (a --join member) has an empty log.
        return (storage.hardState, storage.snapshot?.metadata.confState ?? ConfState())
    }

    func entries(from lo: UInt64, to hi: UInt64, maxBytes: Int) -> [Entry] {
        do {
            return try storage.entries(from: lo, to: hi, maxBytes: maxBytes)
        } catch {
            report(error, "log entries [\(lo), \(hi))")
            return []
        }
    }

    func term(at index: UInt64) -> UInt64? {
        guard index + 1 >= storage.firstIndex, index <= storage.lastIndex else { return nil }
        do {
            return try storage.term(at: index)
        } catch {
            if error.code == .compacted { return nil }
            report(error, "the term of entry \(index)")
            return nil
        }
    }

    var firstIndex: UInt64 { storage.firstIndex }
    var lastIndex: UInt64 { storage.lastIndex }

    func snapshot() -> Snapshot {
        guard let manifest = storage.snapshot else { return Snapshot() }
        if let cached = cachedSnapshot, cached.id == manifest.id { return cached.snapshot }
        do {
            guard let (read, data) = try storage.readSnapshot() else { return Snapshot() }
            let snapshot = Snapshot(metadata: read.metadata, data: data)
            cachedSnapshot = (read.id, snapshot)
            return snapshot
        } catch {
            report(error, "snapshot \(manifest.id)")
            return Snapshot()
        }
    }
}
