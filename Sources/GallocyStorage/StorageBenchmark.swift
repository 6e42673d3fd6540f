import GallocyRaft
import Glibc

/// Measures log appends with sync on: through `RaftStorage.persist` (entry codec, CRC32C, hard
/// state, one transaction and one sync per batch) and through a plain LMDB loop (`mdb_put` of the
/// raw payloads in one transaction, then a synced commit), so that the overhead of everything
/// above LMDB shows as a ratio. Used by `gallocy bench storage`.
package enum StorageBenchmark {
    /// One shape of batch.
    package struct Case: Sendable, Hashable {
        package var batch: Int
        package var entrySize: Int

        package init(batch: Int, entrySize: Int) {
            self.batch = batch
            self.entrySize = entrySize
        }
    }

    /// What is measured.
    package enum Subject: String, Sendable {
        /// `RaftStorage.persist(entries:hardState:)`.
        case raftStorage = "ours"
        /// `mdb_put` of the payloads under 8-byte keys, in one transaction per batch.
        case rawLMDB = "raw"
    }

    package struct Measurement: Sendable {
        package var benchCase: Case
        package var subject: Subject
        package var entries: Int
        package var commits: Int
        package var seconds: Double

        /// Entries made durable per second.
        package var entriesPerSecond: Double { Double(entries) / seconds }
        /// Payload megabytes (10^6 bytes of entry data) made durable per second.
        package var megabytesPerSecond: Double { Double(entries * benchCase.entrySize) / seconds / 1e6 }
    }

    /// Batches of 1, 64 and 1024 entries of 64 B and 4 KiB.
    package static let standardCases = [64, 4096].flatMap { size in
        [1, 64, 1024].map { Case(batch: $0, entrySize: size) }
    }

    /// Appends batches of `benchCase` to a fresh directory under `parent` for about `seconds`
    /// (at least three commits; at most 1 GiB of payload, to bound the disk used), then deletes it.
    package static func measure(_ benchCase: Case, _ subject: Subject, seconds: Double, parent: String)
        throws(StorageError) -> Measurement
    {
        let path = parent + "/\(subject.rawValue)-\(benchCase.batch)x\(benchCase.entrySize)"
        defer { removeDataDirectory(path) }
        let payload = SplitMix64(seed: 42).bytesCopy(benchCase.entrySize)
        let maxEntries = max(3 * benchCase.batch, (1 << 30) / max(benchCase.entrySize, 1))
        let clock = ContinuousClock()
        var entries = 0
        var commits = 0
        let start = clock.now
        func elapsed() -> Double {
            let d = clock.now - start
            return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        }
        func done() -> Bool { commits >= 3 && (elapsed() >= seconds || entries >= maxEntries) }

        switch subject {
        case .raftStorage:
            let storage = try RaftStorage(path: path, options: .init(mapSize: 2 << 30))
            while !done() {
                let first = UInt64(entries + 1)
                let batch = (0..<benchCase.batch).map { Entry(term: 1, index: first + UInt64($0), data: payload) }
                try storage.persist(entries: batch, hardState: HardState(term: 1, vote: 1, commit: first))
                entries += benchCase.batch
                commits += 1
            }
        case .rawLMDB:
            try storageOperation("raw LMDB benchmark in \(path)") {
                guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
                    throw StorageError(.io, "cannot create \(path)")
                }
                let env = try LMDBEnvironment(path: path, configuration: .init(mapSize: 2 << 30))
                let db = try env.openDatabase("log", create: true)
                while !done() {
                    let first = UInt64(entries + 1)
                    try env.write { txn in
                        for k in 0..<UInt64(benchCase.batch) {
                            try txn.put(payload, forKey: StorageLayout.logKey(first + k), in: db, append: true)
                        }
                    }
                    entries += benchCase.batch
                    commits += 1
                }
            }
        }
        return Measurement(
            benchCase: benchCase, subject: subject, entries: entries, commits: commits, seconds: elapsed())
    }

    /// Ours against raw for one case: `rounds` alternating pairs of runs of `seconds / rounds`
    /// each, so that both see the same stretch of the disk's (very variable) sync latency; the
    /// figures are the medians of the rounds.
    package static func compare(_ benchCase: Case, seconds: Double, rounds: Int, parent: String) throws(StorageError)
        -> (ours: Measurement, raw: Measurement)
    {
        var ours: [Measurement] = []
        var raw: [Measurement] = []
        let slice = seconds / Double(max(rounds, 1))
        for _ in 0..<max(rounds, 1) {
            ours.append(try measure(benchCase, .raftStorage, seconds: slice, parent: parent))
            raw.append(try measure(benchCase, .rawLMDB, seconds: slice, parent: parent))
        }
        func median(_ runs: [Measurement]) -> Measurement {
            runs.sorted { $0.entriesPerSecond < $1.entriesPerSecond }[runs.count / 2]
        }
        return (median(ours), median(raw))
    }

    private static func removeDataDirectory(_ path: String) {
        for file in ["data.mdb", "lock.mdb", DataDirectory.lockFileName] { unlink(path + "/" + file) }
        rmdir(path)
    }
}

extension SplitMix64 {
    fileprivate func bytesCopy(_ count: Int) -> [UInt8] {
        var copy = self
        return copy.bytes(count)
    }
}
