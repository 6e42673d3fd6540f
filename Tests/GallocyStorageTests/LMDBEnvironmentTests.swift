import CLMDB
import Foundation
import Synchronization
import Testing

@testable import GallocyStorage

@Suite struct LMDBEnvironmentTests {
    private func open(_ path: String, mapSize: Int = 1 << 20) throws -> (LMDBEnvironment, LMDBDatabase) {
        let env = try LMDBEnvironment(path: path, configuration: .init(mapSize: mapSize))
        return (env, try env.openDatabase("test", create: true))
    }

    @Test func writeCommitsAndReadSeesIt() throws {
        try withTemporaryDirectory { path in
            let (env, db) = try open(path)
            try env.write { txn in try txn.put([1, 2, 3], forKey: Array("k".utf8), in: db) }
            let value = try env.read { txn in try txn.get(Array("k".utf8), in: db).map { Array($0) } }
            #expect(value == [1, 2, 3])
        }
    }

    @Test func throwingWriteClosureAbortsEverything() throws {
        struct Planned: Error {}
        try withTemporaryDirectory { path in
            let (env, db) = try open(path)
            #expect(throws: Planned.self) {
                try env.write { txn in
                    try txn.put([9], forKey: Array("a".utf8), in: db)
                    throw Planned()
                }
            }
            #expect(try env.read { txn in try txn.get(Array("a".utf8), in: db) == nil })
        }
    }

    @Test func readTransactionRefusesWrites() throws {
        try withTemporaryDirectory { path in
            let (env, db) = try open(path)
            let error = #expect(throws: LMDBError.self) {
                try env.read { txn in try txn.put([1], forKey: [1], in: db) }
            }
            #expect(error?.code == EACCES)
        }
    }

    @Test func readOnlyEnvironmentRefusesWriteTransactions() throws {
        try withTemporaryDirectory { path in
            _ = try open(path)
            let env = try LMDBEnvironment(path: path, configuration: .init(readOnly: true))
            let error = #expect(throws: LMDBError.self) { try env.write { _ in } }
            #expect(error?.code == EACCES)
        }
    }

    @Test func readSeesASnapshotWhileAWriteCommitsOnAnotherThread() throws {
        try withTemporaryDirectory { path in
            let (env, db) = try open(path)
            try env.write { txn in try txn.put([1], forKey: [0], in: db) }
            let readerIsIn = DispatchSemaphore(value: 0)
            let writeCommitted = DispatchSemaphore(value: 0)
            let readerDone = DispatchSemaphore(value: 0)
            let seen = FailureLog()
            Thread.detachNewThread {
                do {
                    try env.read { txn in
                        readerIsIn.signal()
                        writeCommitted.wait()
                        // The write committed meanwhile; this transaction still sees its snapshot.
                        seen.record("\(try txn.get([0], in: db).map { Array($0) } ?? [])")
                    }
                } catch {
                    seen.record("error: \(error)")
                }
                readerDone.signal()
            }
            readerIsIn.wait()
            try env.write { txn in try txn.put([2], forKey: [0], in: db) }
            writeCommitted.signal()
            readerDone.wait()
            #expect(seen.all == ["[1]"])
            #expect(try env.read { txn in try txn.get([0], in: db).map { Array($0) } } == [2])
        }
    }

    @Test func cursorWalksForwardBackwardAndSeeks() throws {
        try withTemporaryDirectory { path in
            let (env, db) = try open(path)
            try env.write { txn in
                for k: UInt64 in [10, 20, 30] { try txn.put([UInt8(k)], forKey: bigEndianKey(k), in: db, append: true) }
            }
            try env.read { txn in
                try txn.withCursor(on: db) { cursor throws in
                    #expect(try cursor.first().map { Array($0.value) } == [10])
                    #expect(try cursor.next().map { Array($0.value) } == [20])
                    #expect(try cursor.next().map { Array($0.value) } == [30])
                    #expect(try cursor.next() == nil)
                    #expect(try cursor.last().map { Array($0.value) } == [30])
                    #expect(try cursor.previous().map { Array($0.value) } == [20])
                    #expect(try cursor.seek(atLeast: bigEndianKey(11)).map { Array($0.key) } == bigEndianKey(20))
                    #expect(try cursor.seek(atLeast: bigEndianKey(31)) == nil)
                }
            }
        }
    }

    @Test func cursorDeleteThenNextVisitsTheFollowingItem() throws {
        try withTemporaryDirectory { path in
            let (env, db) = try open(path)
            try env.write { txn in
                for k: UInt64 in 1...10 { try txn.put([UInt8(k)], forKey: bigEndianKey(k), in: db) }
            }
            try env.write { txn in
                try txn.withCursor(on: db) { cursor in
                    var item = try cursor.seek(atLeast: bigEndianKey(4))
                    while let current = item, current.value[0] <= 7 {
                        try cursor.deleteCurrent()
                        item = try cursor.next()
                    }
                }
            }
            let left = try env.read { txn in
                try txn.withCursor(on: db) { cursor in
                    var values: [UInt8] = []
                    var item = try cursor.first()
                    while let current = item {
                        values.append(current.value[0])
                        item = try cursor.next()
                    }
                    return values
                }
            }
            #expect(left == [1, 2, 3, 8, 9, 10])
        }
    }

    @Test func readsAreZeroCopyIntoTheMap() throws {
        try withTemporaryDirectory { path in
            let (env, db) = try open(path)
            let big = [UInt8](repeating: 0xAB, count: 64 << 10)
            try env.write { txn in try txn.put(big, forKey: [7], in: db) }
            try env.read { txn throws in
                let first = try #require(try txn.get([7], in: db))
                let second = try #require(try txn.get([7], in: db))
                // Both reads point at the same bytes of the map: nothing was copied.
                #expect(first.baseAddress == second.baseAddress)
                #expect(first.count == big.count && first.allSatisfy { $0 == 0xAB })
            }
        }
    }

    @Test func reserveWritesTheValueInPlace() throws {
        try withTemporaryDirectory { path in
            let (env, db) = try open(path)
            try env.write { txn in
                try [UInt8]([5]).withUnsafeBytes { key in
                    try txn.reserve(4, forKey: key, in: db) { buffer in buffer.copyBytes(from: [1, 2, 3, 4]) }
                }
            }
            #expect(try env.read { txn in try txn.get([5], in: db).map { Array($0) } } == [1, 2, 3, 4])
        }
    }

    @Test func mapGrowsInsteadOfFailingWhenFull() throws {
        try withTemporaryDirectory { path in
            let (env, db) = try open(path, mapSize: 64 << 10)
            let value = [UInt8](repeating: 0x5A, count: 4000)
            // About 4 MiB into a 64 KiB map, some of it in one transaction.
            try env.write { txn in
                for k: UInt64 in 0..<200 { try txn.put(value, forKey: bigEndianKey(k), in: db) }
            }
            for batch: UInt64 in 1..<5 {
                try env.write { txn in
                    for k in batch * 200..<(batch + 1) * 200 { try txn.put(value, forKey: bigEndianKey(k), in: db) }
                }
            }
            #expect(env.mapSize > 64 << 10)
            #expect(try env.read { txn in try txn.count(in: db) } == 1000)
        }
    }

    @Test func mapStopsGrowingAtItsLimit() throws {
        try withTemporaryDirectory { path in
            let env = try LMDBEnvironment(path: path, configuration: .init(mapSize: 64 << 10, maxMapSize: 256 << 10))
            let db = try env.openDatabase("test", create: true)
            let error = #expect(throws: LMDBError.self) {
                try env.write { txn in
                    for k: UInt64 in 0..<200 {
                        try txn.put([UInt8](repeating: 1, count: 4000), forKey: bigEndianKey(k), in: db)
                    }
                }
            }
            #expect(error?.code == MDB_MAP_FULL)
            #expect(StorageError(try #require(error)).code == .full)
        }
    }

    @Test func errorsCarryTheMDBCodeAndItsMessage() throws {
        try withTemporaryDirectory { path in
            let env = try LMDBEnvironment(path: path, configuration: .init(maxDatabases: 1))
            _ = try env.openDatabase("one", create: true)
            let error = #expect(throws: LMDBError.self) { _ = try env.openDatabase("two", create: true) }
            #expect(error?.code == MDB_DBS_FULL)
            #expect(error?.codeName == "MDB_DBS_FULL")
            #expect(error?.description.contains("opening database 'two'") == true)
            #expect(error?.message.isEmpty == false)
        }
    }

    @Test func missingDirectoryIsENOENT() {
        let error = #expect(throws: LMDBError.self) {
            _ = try LMDBEnvironment(path: "/nonexistent/gallocy-test-dir", configuration: .init())
        }
        #expect(error?.code == ENOENT)
    }
}

@Suite struct LMDBConcurrencyTests {
    @Test func mapGrowsWhileOtherThreadsRead() throws {
        try withTemporaryDirectory { path in
            let env = try LMDBEnvironment(path: path, configuration: .init(mapSize: 64 << 10))
            let db = try env.openDatabase("test", create: true)
            let value = [UInt8](repeating: 0x42, count: 3000)
            let failures = FailureLog()
            let reads = SharedCounter()
            whileReading(readers: 3) {
                // Every value a reader sees is whole.
                do {
                    try env.read { txn in
                        let count = try txn.count(in: db)
                        if count > 0, let last = try txn.get(bigEndianKey(UInt64(count - 1)), in: db) {
                            if last.count != value.count || !last.allSatisfy({ $0 == 0x42 }) {
                                failures.record("torn value under key \(count - 1)")
                            }
                        }
                    }
                    reads.increment()
                } catch {
                    failures.record("reader: \(error)")
                }
            } write: {
                do {
                    for batch: UInt64 in 0..<40 {
                        try env.write { txn in
                            for k in batch * 25..<(batch + 1) * 25 {
                                try txn.put(value, forKey: bigEndianKey(k), in: db)
                            }
                        }
                    }
                } catch {
                    failures.record("writer: \(error)")
                }
            }
            #expect(failures.all.isEmpty, "\(failures.all)")
            #expect(reads.count > 0)
            #expect(env.mapSize > 64 << 10)
            #expect(try env.read { txn in try txn.count(in: db) } == 1000)
        }
    }
}
