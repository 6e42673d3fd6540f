import Foundation
import GallocyCodec
import GallocyRaft
import Testing

@testable import GallocyStorage

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
            #expect(report.firstProblem?.index == 3)
            #expect(report.firstProblem?.record == "log entry 3")
            #expect(report.firstProblem?.message.contains("missing") == true)
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
            #expect(
                try StorageVerifier.verify(directory: path).firstProblem?.record == "snapshot \(manifest.id) chunk 2")
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
            let readOnly = #expect(throws: StorageError.self) {
                _ = try RaftStorage(path: path, options: .init(readOnly: true))
            }
            #expect(readOnly?.code == .corrupted)
        }
    }
}

/// Garbage written over random spots of `data.mdb`, including LMDB's own pages, verified through
/// `gallocy internal verify --isolated`: the verifying process always ends with a report.
@Suite struct GarbageTests {
    @Test func garbageAnywhereInTheDataFileEndsInAReportNeverACrash() throws {
        try withTemporaryDirectory { path in
            let original = path + "/original"
            do {
                let storage = try RaftStorage(path: original, options: .init(snapshotChunkSize: 8192))
                var workload = StorageWorkload(seed: 3)
                for _ in 0..<30 { try StorageWorkload.perform(workload.next(), on: storage) }
                // Many small entries: many leaf and branch pages of LMDB's own B-tree.
                let last = storage.lastIndex
                let term = storage.hardState.term
                try storage.append(makeEntries(last + 1...last + 5000, term: term, size: 12))
            }
            let file = try Data(contentsOf: URL(fileURLWithPath: original + "/data.mdb"))
            var random = GallocyStorage.SplitMix64(seed: 99)
            var reportsOfCrashes = 0
            for round in 0..<40 {
                var damaged = file
                let spots = [1, 5, 50][round % 3]
                for _ in 0..<spots {
                    let offset = Int(random.below(UInt64(file.count - 64)))
                    let garbage = random.bytes(1 + Int(random.below(63)))
                    damaged.replaceSubrange(offset..<offset + garbage.count, with: garbage)
                }
                let copy = path + "/copy\(round)"
                try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
                try damaged.write(to: URL(fileURLWithPath: copy + "/data.mdb"))
                let child = try ChildProcess(["internal", "verify", "--isolated", "--timeout", "60", "--data", copy])
                let output = child.readRemainingOutput() + child.readStandardError()
                let code = child.exitCode
                #expect(
                    code == 0 || code == 1,
                    "round \(round): the verifier process ended with status \(child.waitForExit()): \(output)")
                if output.contains("liblmdb crashed") { reportsOfCrashes += 1 }
            }
            print("garbage: \(reportsOfCrashes) of 40 damaged files crashed liblmdb in the isolated verifier")
        }
    }

    @Test func isolatedVerifierGivesUpAfterItsTimeout() throws {
        try withTemporaryDirectory { path in
            _ = try RaftStorage(path: path)
            let child = try ChildProcess(["internal", "verify", "--isolated", "--timeout", "0", "--data", path])
            let output = child.readRemainingOutput() + child.readStandardError()
            #expect(child.exitCode == 1)
            #expect(output.contains("did not finish within"), "\(output)")
        }
    }
}
