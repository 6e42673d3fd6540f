import Foundation
import GallocyCodec
import GallocyRaft
import Synchronization
import Testing

@testable import GallocyStorage

@Suite struct RaftStorageTests {
    @Test func newDirectoryIsEmpty() throws {
        try withTemporaryDirectory { path in
            let storage = try RaftStorage(path: path + "/node")
            #expect(storage.firstIndex == 1)
            #expect(storage.lastIndex == 0)
            #expect(try storage.term(at: 0) == 0)
            #expect(storage.hardState == .empty)
            #expect(storage.settings == nil)
            #expect(storage.snapshot == nil)
            #expect(try storage.entries(from: 1, to: 1).isEmpty)
        }
    }

    @Test func appendThenReadRangeAndTerms() throws {
        try withTemporaryDirectory { path in
            let storage = try RaftStorage(path: path)
            let entries = makeEntries(1...5, term: 1) + makeEntries(6...10, term: 2)
            try storage.append(entries)
            #expect(storage.firstIndex == 1)
            #expect(storage.lastIndex == 10)
            #expect(storage.lastTerm == 2)
            #expect(try storage.entries(from: 1, to: 11) == entries)
            #expect(try storage.entries(from: 4, to: 7) == Array(entries[3..<6]))
            #expect(try storage.term(at: 5) == 1)
            #expect(try storage.term(at: 6) == 2)
            #expect(try storage.entry(at: 7) == entries[6])
        }
    }

    @Test func byteBudgetStopsEarlyButReturnsAtLeastOneEntry() throws {
        try withTemporaryDirectory { path in
            let storage = try RaftStorage(path: path)
            try storage.append(makeEntries(1...10, term: 1, size: 100))
            let one = EntryCodec.encode(makeEntries(1...1, term: 1, size: 100)[0]).count
            #expect(try storage.entries(from: 1, to: 11, maxBytes: 1).count == 1)
            #expect(try storage.entries(from: 1, to: 11, maxBytes: 3 * one).count == 3)
            #expect(try storage.entries(from: 1, to: 11, maxBytes: 3 * one + 1).count == 3)
        }
    }

    @Test func forEachEntryWalksARangeInBatchesWithStoredSizes() throws {
        try withTemporaryDirectory { path in
            let storage = try RaftStorage(path: path)
            let entries = makeEntries(1...100, term: 1, size: 300)
            try storage.append(entries)
            var seen: [Entry] = []
            try storage.forEachEntry(from: 3, to: 101, batchBytes: 1000) { entry, size in
                #expect(size == EntryCodec.encode(entry).count)
                seen.append(entry)
            }
            #expect(seen == Array(entries[2...]))
        }
    }

    @Test func appendingAtAnIndexReplacesTheConflictingSuffix() throws {
        try withTemporaryDirectory { path in
            let storage = try RaftStorage(path: path)
            try storage.append(makeEntries(1...10, term: 1))
            let replacement = makeEntries(6...7, term: 2)
            try storage.append(replacement)
            #expect(storage.lastIndex == 7)
            #expect(storage.lastTerm == 2)
            #expect(try storage.entries(from: 1, to: 8) == makeEntries(1...5, term: 1) + replacement)
            #expect(throws: StorageError.self) { _ = try storage.term(at: 8) }
        }
    }

    @Test func invariantViolationsThrowAndWriteNothing() throws {
        try withTemporaryDirectory { path in
            let storage = try RaftStorage(path: path)
            try storage.persist(entries: makeEntries(1...5, term: 2), hardState: HardState(term: 2, commit: 3))
            func expectViolation(_ body: () throws -> Void) {
                let error = #expect(throws: StorageError.self) { try body() }
                #expect(error?.code == .invariantViolation)
            }
            expectViolation { try storage.append(makeEntries(8...9, term: 2)) }  // gap
            // Not contiguous:
            expectViolation { try storage.append(makeEntries(6...6, term: 2) + makeEntries(8...8, term: 2)) }
            expectViolation { try storage.append(makeEntries(6...6, term: 1)) }  // term goes down
            expectViolation { try storage.append(makeEntries(3...4, term: 3)) }  // rewrites committed entry 3
            expectViolation { try storage.setHardState(HardState(term: 2, commit: 6)) }  // commit past last
            expectViolation { try storage.compact(through: 4) }  // not committed
            #expect(storage.lastIndex == 5)
            #expect(try storage.entries(from: 1, to: 6) == makeEntries(1...5, term: 2))
            #expect(storage.hardState == HardState(term: 2, commit: 3))
        }
    }

    @Test func committedEntriesThatMatchAreSkippedNotRewritten() throws {
        try withTemporaryDirectory { path in
            let storage = try RaftStorage(path: path)
            try storage.persist(entries: makeEntries(1...5, term: 1), hardState: HardState(term: 1, commit: 4))
            try storage.append(makeEntries(3...4, term: 1) + makeEntries(5...6, term: 2))
            #expect(storage.lastIndex == 6)
            #expect(try storage.term(at: 5) == 2)
        }
    }

    @Test func compactionKeepsTheTermOfTheCompactedIndex() throws {
        try withTemporaryDirectory { path in
            let storage = try RaftStorage(path: path)
            try storage.persist(
                entries: makeEntries(1...4, term: 1) + makeEntries(5...10, term: 3),
                hardState: HardState(term: 3, commit: 8))
            try storage.compact(through: 5)
            #expect(storage.firstIndex == 6)
            #expect(storage.compactedIndex == 5)
            #expect(try storage.term(at: 5) == 3)
            #expect(try storage.entries(from: 6, to: 11) == makeEntries(6...10, term: 3))
            let compacted = #expect(throws: StorageError.self) { _ = try storage.entries(from: 5, to: 7) }
            #expect(compacted?.code == .compacted)
            let below = #expect(throws: StorageError.self) { _ = try storage.term(at: 4) }
            #expect(below?.code == .compacted)
            let beyond = #expect(throws: StorageError.self) { _ = try storage.term(at: 11) }
            #expect(beyond?.code == .unavailable)
            try storage.compact(through: 3)  // at or below: nothing to do
            #expect(storage.firstIndex == 6)
            // Compacting everything committed, then appending after it.
            try storage.setHardState(HardState(term: 3, commit: 10))
            try storage.compact(through: 10)
            #expect(storage.lastIndex == 10 && storage.firstIndex == 11)
            #expect(try storage.term(at: 10) == 3)
            try storage.persist(entries: makeEntries(11...11, term: 4), hardState: HardState(term: 4, commit: 10))
            #expect(try storage.entries(from: 11, to: 12) == makeEntries(11...11, term: 4))
            #expect(storage.verify().isIntact)
        }
    }

    @Test func reopeningRestoresEverything() throws {
        try withTemporaryDirectory { path in
            let settings = ClusterSettings(
                clusterID: 77, heapBase: 0x7000_0000_0000, heapSize: 256 << 20, pageSize: 4096)
            let conf = ConfState(voters: [1, 2, 3], learners: [4])
            do {
                let storage = try RaftStorage(path: path)
                try storage.persist(
                    entries: makeEntries(1...20, term: 2), hardState: HardState(term: 3, vote: 2, commit: 15),
                    settings: settings,
                    confState: conf)
                try storage.compact(through: 10)
            }
            let storage = try RaftStorage(path: path)
            #expect(storage.firstIndex == 11)
            #expect(storage.lastIndex == 20)
            #expect(storage.lastTerm == 2)
            #expect(try storage.term(at: 10) == 2)
            #expect(storage.hardState == HardState(term: 3, vote: 2, commit: 15))
            #expect(storage.settings == settings)
            #expect(storage.confState == conf)
            #expect(try storage.entries(from: 11, to: 21) == makeEntries(11...20, term: 2))
            #expect(storage.verify().isIntact)
        }
    }

    @Test func entriesHardStateAndSettingsShareOneTransaction() throws {
        try withTemporaryDirectory { path in
            do {
                let storage = try RaftStorage(path: path)
                try storage.persist(entries: makeEntries(1...3, term: 1), hardState: HardState(term: 1, commit: 1))
                // The entries are written first inside the transaction; the hard state check fails
                // after them (commit 9 is past entry 5), so the whole transaction aborts: neither
                // the entries nor the settings land.
                let settings = ClusterSettings(clusterID: 1, heapBase: 1 << 40, heapSize: 1 << 20, pageSize: 4096)
                let error = #expect(throws: StorageError.self) {
                    try storage.persist(
                        entries: makeEntries(4...5, term: 2), hardState: HardState(term: 2, commit: 9),
                        settings: settings)
                }
                #expect(error?.code == .invariantViolation)
                #expect(storage.hardState == HardState(term: 1, commit: 1))
                #expect(storage.lastIndex == 3)
                #expect(storage.settings == nil)
                // A valid batch lands whole: commit 5 is accepted because entry 5 is in the same call.
                try storage.persist(entries: makeEntries(4...6, term: 2), hardState: HardState(term: 2, commit: 5))
                #expect(storage.hardState.commit == 5 && storage.lastIndex == 6)
            }
            let reopened = try RaftStorage(path: path)
            #expect(
                reopened.lastIndex == 6 && reopened.hardState == HardState(term: 2, commit: 5)
                    && reopened.settings == nil)
            #expect(try reopened.entries(from: 1, to: 7) == makeEntries(1...3, term: 1) + makeEntries(4...6, term: 2))
        }
    }

    @Test func readOnlyOpeningReadsWithoutTheLockAndRefusesWrites() throws {
        try withTemporaryDirectory { path in
            let writer = try RaftStorage(path: path)
            try writer.persist(entries: makeEntries(1...3, term: 1), hardState: HardState(term: 1, commit: 2))
            let reader = try RaftStorage(path: path, options: .init(readOnly: true))
            #expect(reader.lastIndex == 3)
            #expect(reader.hardState.commit == 2)
            #expect(try reader.entries(from: 1, to: 4) == makeEntries(1...3, term: 1))
            let error = #expect(throws: StorageError.self) { try reader.append(makeEntries(4...4, term: 1)) }
            #expect(error?.code == .readOnly)
        }
    }

    @Test func readOnlyOpeningOfAMissingDirectoryIsNotFound() {
        let error = #expect(throws: StorageError.self) {
            _ = try RaftStorage(path: "/nonexistent/gallocy", options: .init(readOnly: true))
        }
        #expect(error?.code == .notFound)
    }

    @Test func aDirectoryOfANewerLayoutIsRefused() throws {
        try withTemporaryDirectory { path in
            _ = try RaftStorage(path: path)
            try rawPut(
                path, database: "meta", key: Array("format".utf8),
                value: StorageRecordCodec.encodeFormat(layoutVersion: 9))
            let error = #expect(throws: StorageError.self) { _ = try RaftStorage(path: path) }
            #expect(error?.code == .unsupportedVersion)
        }
    }

    @Test func mapGrowsUnderTheLog() throws {
        try withTemporaryDirectory { path in
            let storage = try RaftStorage(path: path, options: .init(mapSize: 64 << 10))
            for batch: UInt64 in 0..<8 {
                try storage.append(makeEntries(batch * 64 + 1...(batch + 1) * 64, term: 1, size: 4096))
            }
            #expect(storage.lastIndex == 512)
            #expect(storage.verify().isIntact)
            let usage = storage.diskUsage
            #expect(usage.usedBytes > 512 * 4096 && usage.usedBytes <= usage.mapSize)
        }
    }

    @Test func storedRecordsRejectEveryFlippedByteAndEveryTruncation() {
        typealias Decode = (UnsafeRawBufferPointer) throws -> Void
        let records: [([UInt8], Decode)] = [
            (
                StorageRecordCodec.encode(HardState(term: 3, vote: 1, commit: 9)),
                { _ = try StorageRecordCodec.decodeHardState($0) }
            ),
            (
                StorageRecordCodec.encode(ClusterSettings(clusterID: 1, heapBase: 2, heapSize: 3, pageSize: 4)),
                { _ = try StorageRecordCodec.decodeSettings($0) }
            ),
            (
                StorageRecordCodec.encode(ConfState(voters: [1, 2], learners: [3], votersOutgoing: [4])),
                { _ = try StorageRecordCodec.decodeConfState($0) }
            ),
            (
                StorageRecordCodec.encode(SnapshotPointer(id: 1, index: 2, term: 3)),
                { _ = try StorageRecordCodec.decodeSnapshotPointer($0) }
            ),
            (
                StorageRecordCodec.encode(CompactionPoint(index: 2, term: 3)),
                { _ = try StorageRecordCodec.decodeCompactionPoint($0) }
            ),
            (StorageRecordCodec.encodeFormat(layoutVersion: 1), { _ = try StorageRecordCodec.decodeFormat($0) }),
            (
                StorageRecordCodec.encode(
                    SnapshotManifest(
                        id: 1, metadata: SnapshotMetadata(index: 5, term: 2, confState: ConfState(voters: [1])),
                        totalSize: 10, chunkSize: 4, chunkCount: 3, checksum: 7)),
                { _ = try StorageRecordCodec.decodeManifest($0) }
            ),
        ]
        for (record, decode) in records {
            #expect(throws: Never.self) { try record.withUnsafeBytes(decode) }
            for i in record.indices {
                var damaged = record
                damaged[i] ^= 0x10
                #expect(throws: CodecError.self) { try damaged.withUnsafeBytes(decode) }
            }
            for count in 0..<record.count {
                #expect(throws: CodecError.self) { try Array(record.prefix(count)).withUnsafeBytes(decode) }
            }
        }
    }
}

@Suite struct RaftStorageConcurrencyTests {
    @Test func readersRacingAppendsTruncationsAndCompactionsSeeOnlyBoundsErrors() throws {
        try withTemporaryDirectory { path in
            let storage = try RaftStorage(path: path, options: .init(mapSize: 128 << 10))
            let failures = FailureLog()
            let reads = SharedCounter()
            whileReading(readers: 2) {
                let first = storage.firstIndex
                let last = storage.lastIndex
                do {
                    let entries = try storage.entries(from: first, to: last + 1)
                    for (k, entry) in entries.enumerated() where entry.index != first + UInt64(k) {
                        failures.record("entry \(entry.index) returned at position \(k) from \(first)")
                    }
                    _ = try storage.term(at: (first + last) / 2)
                    reads.increment()
                } catch let error as StorageError where error.code == .compacted || error.code == .unavailable {
                    // The bounds moved between reading them and reading the log: expected.
                } catch {
                    failures.record("reader: \(error)")
                }
            } write: {
                do {
                    var term: UInt64 = 1
                    for round: UInt64 in 0..<150 {
                        var start = storage.lastIndex + 1
                        if round % 7 == 3 && storage.lastIndex > storage.hardState.commit + 2 {
                            // Replace an uncommitted suffix.
                            start = storage.hardState.commit + 2
                            term += 1
                        }
                        let entries = makeEntries(start...start + 4, term: term, size: 200)
                        try storage.persist(entries: entries, hardState: HardState(term: term, commit: start + 1))
                        if round % 10 == 9 { try storage.compact(through: storage.hardState.commit - 1) }
                    }
                } catch {
                    failures.record("writer: \(error)")
                }
            }
            #expect(failures.all.isEmpty, "\(failures.all)")
            #expect(reads.count > 0)
            #expect(storage.verify().isIntact)
        }
    }
}
