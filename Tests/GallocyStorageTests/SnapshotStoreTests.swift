import GallocyCodec
import GallocyRaft
import Testing

@testable import GallocyStorage

@Suite struct SnapshotStoreTests {
    private func bytes(_ count: Int, seed: UInt8) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) }
    }

    @Test func snapshotRoundTripsWholeAndByChunk() throws {
        try withTemporaryDirectory { path in
            let storage = try RaftStorage(path: path, options: .init(snapshotChunkSize: 1000))
            let data = bytes(4500, seed: 1)
            let meta = SnapshotMetadata(index: 0, term: 0, confState: ConfState(voters: [1, 2, 3]))
            let manifest = try storage.saveSnapshot(meta, data: data)
            #expect(manifest.chunkCount == 5)
            #expect(manifest.totalSize == 4500)
            #expect(storage.snapshot == manifest)
            let read = try #require(try storage.readSnapshot())
            #expect(read.manifest == manifest && read.data == data)
            #expect(try storage.readSnapshotChunk(4, of: manifest) == Array(data[4000...]))
            #expect(try storage.readSnapshotChunk(1, of: manifest) == Array(data[1000..<2000]))
            #expect(storage.verify().isIntact)
        }
    }

    @Test func largeSnapshotHandedOverInOneCallRoundTrips() throws {
        try withTemporaryDirectory { path in
            // 20 MiB in 1 MiB chunks: written as three transactions of at most 8 chunks.
            let storage = try RaftStorage(path: path, options: .init(mapSize: 1 << 20))
            var random = GallocyStorage.SplitMix64(seed: 5)
            let data = random.bytes(20 << 20)
            let manifest = try storage.saveSnapshot(SnapshotMetadata(), data: data)
            #expect(manifest.chunkCount == 20)
            #expect(try storage.readSnapshot()?.data == data)
            #expect(try storage.readSnapshotChunk(19, of: manifest) == Array(data[(19 << 20)...]))
        }
    }

    @Test func emptySnapshotHasNoChunks() throws {
        try withTemporaryDirectory { path in
            let storage = try RaftStorage(path: path)
            let manifest = try storage.saveSnapshot(SnapshotMetadata(), data: [])
            #expect(manifest.chunkCount == 0)
            #expect(try storage.readSnapshot()?.data == [])
        }
    }

    @Test func newSnapshotReplacesTheOldAndRemovesItsChunks() throws {
        try withTemporaryDirectory { path in
            let storage = try RaftStorage(path: path, options: .init(snapshotChunkSize: 100))
            try storage.persist(entries: makeEntries(1...10, term: 1), hardState: HardState(term: 1, commit: 10))
            let first = try storage.saveSnapshot(SnapshotMetadata(index: 5, term: 1), data: bytes(1000, seed: 1))
            let second = try storage.saveSnapshot(SnapshotMetadata(index: 8, term: 1), data: bytes(350, seed: 2))
            #expect(second.id > first.id)
            #expect(try storage.readSnapshot()?.data == bytes(350, seed: 2))
            let gone = #expect(throws: StorageError.self) { _ = try storage.readSnapshotChunk(0, of: first) }
            #expect(gone?.code == .notFound)
            let keys = try storage.environment.read { txn in try txn.count(in: storage.snapshotDB) }
            #expect(keys == 4 + 1)  // 4 chunks and a manifest
        }
    }

    @Test func crashBeforeTheManifestLeavesThePreviousSnapshotInForce() throws {
        try withTemporaryDirectory { path in
            let old = bytes(3000, seed: 9)
            do {
                let storage = try RaftStorage(path: path, options: .init(snapshotChunkSize: 256))
                try storage.persist(entries: makeEntries(1...10, term: 1), hardState: HardState(term: 1, commit: 10))
                try storage.saveSnapshot(SnapshotMetadata(index: 4, term: 1), data: old)
                // A second snapshot whose chunks reach the disk, and then the process "dies".
                let writer = try storage.beginSnapshot(SnapshotMetadata(index: 9, term: 1))
                try writer.write(bytes(5000, seed: 3))
                try writer.flush()
            }
            let storage = try RaftStorage(path: path, options: .init(snapshotChunkSize: 256))
            #expect(storage.snapshot?.metadata.index == 4)
            #expect(try storage.readSnapshot()?.data == old)
            #expect(storage.verify().isIntact)
            // The next snapshot cleans the leftovers up.
            try storage.saveSnapshot(SnapshotMetadata(index: 9, term: 1), data: bytes(600, seed: 4))
            let keys = try storage.environment.read { txn in try txn.count(in: storage.snapshotDB) }
            #expect(keys == 3 + 1)
        }
    }

    @Test func supersededWriterCannotFinish() throws {
        try withTemporaryDirectory { path in
            let storage = try RaftStorage(path: path)
            let stale = try storage.beginSnapshot(SnapshotMetadata())
            try stale.write([1, 2, 3])
            let fresh = try storage.beginSnapshot(SnapshotMetadata())
            let error = #expect(throws: StorageError.self) { try stale.finish() }
            #expect(error?.code == .invariantViolation)
            try fresh.write([4])
            try fresh.finish()
            #expect(try storage.readSnapshot()?.data == [4])
        }
    }

    @Test func installingASnapshotReplacesTheLog() throws {
        try withTemporaryDirectory { path in
            let storage = try RaftStorage(path: path)
            try storage.persist(entries: makeEntries(1...5, term: 1), hardState: HardState(term: 3, commit: 2))
            let conf = ConfState(voters: [1, 2, 3])
            try storage.saveSnapshot(
                SnapshotMetadata(index: 20, term: 3, confState: conf), data: [7, 7], replacingLog: true)
            #expect(storage.firstIndex == 21 && storage.lastIndex == 20)
            #expect(try storage.term(at: 20) == 3)
            #expect(storage.hardState.commit == 20)
            #expect(storage.confState == conf)
            try storage.append(makeEntries(21...22, term: 3))
            #expect(storage.verify().isIntact)
        }
    }

    @Test func installingASnapshotKeepsAMatchingSuffix() throws {
        try withTemporaryDirectory { path in
            let storage = try RaftStorage(path: path)
            try storage.persist(entries: makeEntries(1...10, term: 2), hardState: HardState(term: 2, commit: 3))
            try storage.saveSnapshot(SnapshotMetadata(index: 6, term: 2), data: [1], replacingLog: true)
            #expect(storage.firstIndex == 7 && storage.lastIndex == 10)
            #expect(try storage.entries(from: 7, to: 11) == makeEntries(7...10, term: 2))
        }
    }
}
