import CLMDB
import GallocyCodec
import GallocyRaft
import Glibc

/// What `StorageVerifier` found in a data directory.
package struct VerificationReport: Sendable, Hashable, CustomStringConvertible {
    /// One damaged or inconsistent record.
    package struct Problem: Sendable, Hashable, CustomStringConvertible {
        /// The record, as a person would name it: `log entry 17`, `meta hard_state`,
        /// `snapshot 3 chunk 2`, `data.mdb`.
        package var record: String
        /// The log index concerned, when the record is a log entry.
        package var index: UInt64?
        package var message: String

        package var description: String { "\(record): \(message)" }
    }

    /// Problems in the order they were found: metadata, then the log in index order, then the
    /// snapshot. The walk of each part stops at its first problem, so `problems.first` is the
    /// first bad record and later parts are still checked.
    package var problems: [Problem] = []
    /// Entries that decoded and checked out.
    package var entriesChecked = 0
    package var firstIndex: UInt64 = 0
    package var lastIndex: UInt64 = 0
    package var snapshotChunksChecked = 0

    package var isIntact: Bool { problems.isEmpty }
    /// The first bad record, if any.
    package var firstProblem: Problem? { problems.first }

    package var description: String {
        if isIntact {
            return
                "intact: log \(firstIndex)...\(lastIndex) (\(entriesChecked) entries), \(snapshotChunksChecked) snapshot chunks"
        }
        return
            (["\(problems.count) problem(s), the first: \(problems[0])"] + problems.dropFirst().map { "also: \($0)" })
            .joined(separator: "\n")
    }

    mutating func report(_ record: String, index: UInt64? = nil, _ message: String) {
        problems.append(Problem(record: record, index: index, message: message))
    }
}

/// Checks every stored checksum and the structure of a data directory: the metadata records
/// decode and are of a known version; every log entry decodes with a good checksum, sits under
/// the key of its own index, the indices run without a gap from the compacted index + 1, terms
/// never decrease, the commit index is not past the last index; the snapshot in force has its
/// manifest, every chunk, and the checksum of the whole. It never traps on damaged data: what
/// LMDB itself finds damaged (a truncated or overwritten `data.mdb`) becomes a problem too.
package enum StorageVerifier {
    /// Verifies the data directory at `path`, opened read-only (the directory may belong to a
    /// running member). Throws only when there is nothing to verify (no such directory, no
    /// `data.mdb`); damage is reported in the report.
    package static func verify(directory path: String) throws(StorageError) -> VerificationReport {
        var st = stat()
        guard stat(path + "/data.mdb", &st) == 0 else {
            throw StorageError(.notFound, "\(path) is not a Gallocy data directory (it has no data.mdb)")
        }
        var report = VerificationReport()
        let environment: LMDBEnvironment
        let databases: (log: LMDBDatabase, meta: LMDBDatabase, snapshot: LMDBDatabase)
        do {
            environment = try LMDBEnvironment(path: path, configuration: .init(maxDatabases: 4, readOnly: true))
            databases = (
                try environment.openDatabase(StorageLayout.logDatabase, create: false),
                try environment.openDatabase(StorageLayout.metaDatabase, create: false),
                try environment.openDatabase(StorageLayout.snapshotDatabase, create: false)
            )
        } catch {
            report.report("data.mdb", "LMDB cannot open it: \(error.description)")
            return report
        }
        verify(environment, log: databases.log, meta: databases.meta, snapshot: databases.snapshot, into: &report)
        return report
    }

    /// Verifies an open storage, in one read transaction.
    package static func verify(_ storage: RaftStorage) -> VerificationReport {
        var report = VerificationReport()
        verify(
            storage.environment, log: storage.logDB, meta: storage.metaDB, snapshot: storage.snapshotDB, into: &report)
        return report
    }

    static func verify(
        _ environment: LMDBEnvironment, log: LMDBDatabase, meta: LMDBDatabase, snapshot: LMDBDatabase,
        into report: inout VerificationReport
    ) {
        do {
            try environment.read { txn in
                var walk = Walk(log: log, meta: meta, snapshotDB: snapshot)
                walk.checkMeta(txn, &report)
                walk.checkLog(txn, &report)
                walk.checkSnapshot(txn, &report)
            }
        } catch {
            report.report("data.mdb", "LMDB failed while reading it: \(error)")
        }
    }

    /// One verification pass inside one read transaction.
    private struct Walk {
        let log: LMDBDatabase
        let meta: LMDBDatabase
        let snapshotDB: LMDBDatabase
        var compaction = CompactionPoint.none
        var hardState = HardState.empty
        var pointer: SnapshotPointer?

        /// Reads one meta record, reporting a LMDB failure or a decode failure.
        private func record<T>(
            _ txn: borrowing LMDBTransaction, _ key: [UInt8], _ report: inout VerificationReport,
            _ decode: (UnsafeRawBufferPointer) throws(CodecError) -> T
        ) -> T? {
            let name = "meta " + String(decoding: key, as: UTF8.self)
            do {
                guard let raw = try txn.get(key, in: meta) else { return nil }
                return try decode(raw)
            } catch let error as CodecError {
                report.report(name, "\(error)")
            } catch {
                report.report(name, "\(error)")
            }
            return nil
        }

        mutating func checkMeta(_ txn: borrowing LMDBTransaction, _ report: inout VerificationReport) {
            let before = report.problems.count
            if let version = record(txn, StorageLayout.formatKey, &report, StorageRecordCodec.decodeFormat) {
                if version != StorageLayout.layoutVersion {
                    report.report(
                        "meta format", "layout version \(version), this build knows \(StorageLayout.layoutVersion)")
                }
            } else if report.problems.count == before {
                report.report("meta format", "missing: this is not a Gallocy data directory, or its metadata was lost")
            }
            compaction =
                record(txn, StorageLayout.compactionKey, &report, StorageRecordCodec.decodeCompactionPoint) ?? .none
            hardState = record(txn, StorageLayout.hardStateKey, &report, StorageRecordCodec.decodeHardState) ?? .empty
            _ = record(txn, StorageLayout.settingsKey, &report, StorageRecordCodec.decodeSettings)
            _ = record(txn, StorageLayout.confStateKey, &report, StorageRecordCodec.decodeConfState)
            pointer = record(txn, StorageLayout.snapshotPointerKey, &report, StorageRecordCodec.decodeSnapshotPointer)
        }

        mutating func checkLog(_ txn: borrowing LMDBTransaction, _ report: inout VerificationReport) {
            report.firstIndex = compaction.index + 1
            var expected = compaction.index + 1
            var previousTerm = compaction.term
            var lastIndex = compaction.index
            var lastTerm = compaction.term
            do {
                try txn.withCursor(on: log) { cursor in
                    var item = try cursor.first()
                    while let (key, value) = item {
                        guard let index = StorageLayout.logIndex(key) else {
                            report.report(
                                "log key after index \(expected - 1)", index: expected,
                                "the key is \(key.count) bytes, not an 8-byte index")
                            return
                        }
                        let record = "log entry \(index)"
                        guard index == expected else {
                            if index < expected {
                                report.report(
                                    record, index: index,
                                    "is at or below the compacted index \(compaction.index) (or out of order)")
                            } else {
                                report.report(
                                    "log entry \(expected)", index: expected,
                                    "missing: the next stored entry is \(index) (the log runs from \(compaction.index + 1))"
                                )
                            }
                            return
                        }
                        let entry: Entry
                        do { entry = try EntryCodec.decode(value) } catch {
                            report.report(record, index: index, "\(error)")
                            return
                        }
                        guard entry.index == index else {
                            report.report(
                                record, index: index, "stored under index \(index) but says it is entry \(entry.index)")
                            return
                        }
                        guard entry.term >= previousTerm else {
                            report.report(
                                record, index: index,
                                "term \(entry.term) is below the term \(previousTerm) of the entry before it")
                            return
                        }
                        previousTerm = entry.term
                        (lastIndex, lastTerm) = (index, entry.term)
                        report.entriesChecked += 1
                        expected += 1
                        item = try cursor.next()
                    }
                }
            } catch {
                report.report("log after index \(expected - 1)", index: expected, "LMDB failed: \(error)")
                return
            }
            report.lastIndex = lastIndex
            // Past a bad entry the log's end is unknown: comparing the hard state with it would
            // only report a consequence of the problem already named.
            guard report.problems.allSatisfy({ $0.index == nil }) else { return }
            if hardState.commit > lastIndex {
                report.report(
                    "meta hard_state", "commit index \(hardState.commit) is beyond the last log index \(lastIndex)")
            }
            if hardState.commit < compaction.index {
                report.report(
                    "meta hard_state",
                    "commit index \(hardState.commit) is below the compacted index \(compaction.index)")
            }
            if hardState != .empty && hardState.term < lastTerm {
                report.report(
                    "meta hard_state", "term \(hardState.term) is below the term \(lastTerm) of the last log entry")
            }
        }

        mutating func checkSnapshot(_ txn: borrowing LMDBTransaction, _ report: inout VerificationReport) {
            guard let pointer else { return }
            let record = "snapshot \(pointer.id)"
            do {
                guard let raw = try txn.get(StorageLayout.manifestKey(snapshot: pointer.id), in: snapshotDB) else {
                    report.report(
                        "\(record) manifest", "missing, although the snapshot pointer names it (index \(pointer.index))"
                    )
                    return
                }
                let manifest: SnapshotManifest
                do { manifest = try StorageRecordCodec.decodeManifest(raw) } catch {
                    report.report("\(record) manifest", "\(error)")
                    return
                }
                guard manifest.id == pointer.id, manifest.metadata.index == pointer.index,
                    manifest.metadata.term == pointer.term
                else {
                    report.report(
                        "\(record) manifest",
                        "describes snapshot \(manifest.id) at \(manifest.metadata.index)/\(manifest.metadata.term), the pointer says \(pointer.id) at \(pointer.index)/\(pointer.term)"
                    )
                    return
                }
                var crc: UInt32 = 0
                for number in 0..<manifest.chunkCount {
                    let chunkRecord = "\(record) chunk \(number)"
                    guard
                        let chunk = try txn.get(
                            StorageLayout.chunkKey(snapshot: manifest.id, chunk: number), in: snapshotDB)
                    else {
                        report.report(chunkRecord, "missing")
                        return
                    }
                    let payload: UnsafeRawBufferPointer
                    do {
                        payload = try StorageRecordCodec.decodeChunk(chunk, snapshot: manifest.id, number: number)
                    } catch {
                        report.report(chunkRecord, "\(error)")
                        return
                    }
                    guard UInt64(payload.count) == manifest.expectedSize(ofChunk: number) else {
                        report.report(
                            chunkRecord,
                            "holds \(payload.count) bytes, the manifest says \(manifest.expectedSize(ofChunk: number))")
                        return
                    }
                    crc = CRC32C.checksum(payload, continuing: crc)
                    report.snapshotChunksChecked += 1
                }
                if crc != manifest.checksum {
                    report.report(record, "the checksum of the whole snapshot does not match its manifest")
                }
            } catch {
                report.report(record, "LMDB failed: \(error)")
            }
        }
    }
}

extension RaftStorage {
    /// Verifies this storage (see `StorageVerifier`).
    package func verify() -> VerificationReport { StorageVerifier.verify(self) }
}
