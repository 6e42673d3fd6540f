import Foundation
import GallocyCodec
import GallocyRaft
@testable import GallocyStorage
import Testing

@Suite struct CorruptionTests {
    @Test func intactDirectoryVerifies() throws {
        try withTemporaryDirectory { path in
            do {
                let storage = try RaftStorage(path: path, options: .init(snapshotChunkSize: 64))
                try storage.persist(entries: makeEntries(1...30, term: 1), hardState: HardState(term: 1, commit: 20))
                try storage.saveSnapshot(SnapshotMetadata(index: 10, term: 1), data: Array(repeating: 3, count: 1000))
                try storage.compact(through: 10)
            }
            let report = try StorageVerifier.verify(directory: path)
            #expect(report.isIntact, "\(report)")
            #expect(report.entriesChecked == 20)
            #expect(report.firstIndex == 11 && report.lastIndex == 30)
            #expect(report.snapshotChunksChecked == 16)
        }
    }

    @Test func flippedByteInAnEntryIsReportedAtItsIndex() throws {
        try withTemporaryDirectory { path in
            do {
                let storage = try RaftStorage(path: path)
                try storage.persist(entries: makeEntries(1...40, term: 2), hardState: HardState(term: 2, commit: 40))
            }
            var value = try #require(try rawGet(path, database: "log", key: bigEndianKey(17)))
            value[value.count / 2] ^= 0x01
            try rawPut(path, database: "log", key: bigEndianKey(17), value: value)
            let report = try StorageVerifier.verify(directory: path)
            #expect(report.firstProblem?.index == 17)
            #expect(report.firstProblem?.record == "log entry 17")
            #expect(report.entriesChecked == 16)
            // Reading it through the storage names it too, and does not crash.
            let storage = try RaftStorage(path: path)
            let error = #expect(throws: StorageError.self) { _ = try storage.entries(from: 10, to: 20) }
            #expect(error?.code == .corrupted)
            #expect(error?.message.contains("log entry 17") == true)
        }
    }

    @Test func entryUnderTheWrongKeyAndGapsAreReported() throws {
        try withTemporaryDirectory { path in
            do {
                let storage = try RaftStorage(path: path)
                try storage.persist(entries: makeEntries(1...10, term: 1), hardState: HardState(term: 1, commit: 10))
            }
            let misplaced = EntryCodec.encode(makeEntries(4...4, term: 1)[0])
            try rawPut(path, database: "log", key: bigEndianKey(5), value: misplaced)
            #expect(try StorageVerifier.verify(directory: path).firstProblem?.index == 5)
            try rawPut(path, database: "log", key: bigEndianKey(3), value: nil)
            let report = try StorageVerifier.verify(directory: path)
            #expect(report.firstProblem?.index == 4)
            #expect(report.firstProblem?.message.contains("gap") == true)
        }
    }

    @Test func damagedHardStateIsReportedAndRefusedAtOpen() throws {
        try withTemporaryDirectory { path in
            do {
                let storage = try RaftStorage(path: path)
                try storage.setHardState(HardState(term: 1))
            }
            var value = try #require(try rawGet(path, database: "meta", key: Array("hard_state".utf8)))
            value[3] ^= 0xFF
            try rawPut(path, database: "meta", key: Array("hard_state".utf8), value: value)
            #expect(try StorageVerifier.verify(directory: path).firstProblem?.record == "meta hard_state")
            let error = #expect(throws: StorageError.self) { _ = try RaftStorage(path: path) }
            #expect(error?.code == .corrupted)
        }
    }

    @Test func missingManifestIsReported() throws {
        try withTemporaryDirectory { path in
            let manifest: SnapshotManifest
            do {
                let storage = try RaftStorage(path: path)
                manifest = try storage.saveSnapshot(SnapshotMetadata(), data: [1, 2, 3])
            }
            try rawPut(path, database: "snapshot", key: StorageLayout.manifestKey(snapshot: manifest.id), value: nil)
            let report = try StorageVerifier.verify(directory: path)
            #expect(report.firstProblem?.record == "snapshot \(manifest.id) manifest")
            #expect(report.firstProblem?.message.contains("missing") == true)
        }
    }

    @Test func damagedSnapshotChunkIsReported() throws {
        try withTemporaryDirectory { path in
            let manifest: SnapshotManifest
            do {
                let storage = try RaftStorage(path: path, options: .init(snapshotChunkSize: 10))
                manifest = try storage.saveSnapshot(SnapshotMetadata(), data: Array(repeating: 1, count: 35))
            }
            let key = StorageLayout.chunkKey(snapshot: manifest.id, chunk: 2)
            var value = try #require(try rawGet(path, database: "snapshot", key: key))
            value[14] ^= 0x80
            try rawPut(path, database: "snapshot", key: key, value: value)
            #expect(try StorageVerifier.verify(directory: path).firstProblem?.record == "snapshot \(manifest.id) chunk 2")
            let storage = try RaftStorage(path: path, options: .init(snapshotChunkSize: 10))
            #expect(throws: StorageError.self) { _ = try storage.readSnapshot() }
        }
    }

    @Test(arguments: [0.5, 0.1, 0.0001])
    func truncatedDataFileIsAClearErrorNotACrash(keeping fraction: Double) throws {
        try withTemporaryDirectory { path in
            do {
                let storage = try RaftStorage(path: path)
                for batch: UInt64 in 0..<16 {
                    try storage.append(makeEntries(batch * 32 + 1...(batch + 1) * 32, term: 1, size: 4000))
                }
            }
            let file = path + "/data.mdb"
            let size = try #require(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
            #expect(truncate(file, off_t(Double(size) * fraction)) == 0)
            let report = try StorageVerifier.verify(directory: path)
            #expect(!report.isIntact)
            #expect(report.firstProblem?.record == "data.mdb")
            let error = #expect(throws: StorageError.self) { _ = try RaftStorage(path: path) }
            #expect(error?.code == .corrupted)
            let readOnly = #expect(throws: StorageError.self) { _ = try RaftStorage(path: path, options: .init(readOnly: true)) }
            #expect(readOnly?.code == .corrupted)
        }
    }
}
