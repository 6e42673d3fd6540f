import GallocyCodec
import Testing

@testable import GallocyStateMachine

/// Batches (`PageTable.beginBatch()`): the engine applies the entries of one Raft Ready in one
/// transaction and writes the writes' per-page records once per page at the end. Nothing may
/// read differently from applying the same commands one transaction each.
@Suite struct PageTableBatchTests {
    /// The same commands on a replica with and without a batch.
    func both(_ commands: (Replica) throws -> [ApplyResult]) throws -> (single: Replica, batched: Replica) {
        let single = try Replica()
        let batched = try Replica()
        let expected = try commands(single)
        try batched.table.beginBatch()
        let results = try commands(batched)
        try batched.table.endBatch()
        #expect(results == expected)
        #expect(try batched.table.canonicalDump() == single.table.canonicalDump())
        return (single, batched)
    }

    @Test func aWriteAfterAFreeInTheSameBatchIsRejectedAsWithoutOne() throws {
        var page: UInt64 = 0
        let (_, batched) = try both { replica in
            let block = try replica.allocate(8192)
            page = (block - testSettings.heapBase) / 4096
            return [
                try replica.apply(.write(member: 1, pages: [pageWrite(page), pageWrite(page + 1)], releaseLock: nil, releaseEpoch: 0)),
                try replica.apply(.free(address: block)),
                // The batch saw these pages allocated a moment ago; they are not any more.
                try replica.apply(.write(member: 2, pages: [pageWrite(page)], releaseLock: nil, releaseEpoch: 0)),
            ]
        }
        #expect(try batched.table.pages(from: page, count: 1).first?.state == .zero)
    }

    @Test func writesToOnePageAreRecordedOnceWithTheLastWriterAndTheirCount() throws {
        var page: UInt64 = 0
        let (single, batched) = try both { replica in
            let block = try replica.allocate(100)
            page = (block - testSettings.heapBase) / 4096
            var results: [ApplyResult] = []
            for member in [2, 3, 1, 3] as [UInt64] {
                results.append(try replica.apply(.write(member: member, pages: [pageWrite(page)], releaseLock: nil, releaseEpoch: 0)))
            }
            // Rejected (a page outside any block): its record must not count.
            results.append(
                try replica.apply(.write(member: 2, pages: [pageWrite(page), pageWrite(page + 7)], releaseLock: nil, releaseEpoch: 0)))
            return results
        }
        let row = try #require(try batched.table.pages(from: page, count: 1).first)
        #expect(row.lastWriter == 3 && row.writeCount == 4)
        #expect(try row.lastWriteIndex == single.table.pages(from: page, count: 1).first?.lastWriteIndex)
    }

    @Test func readersInsideABatchSeeItsRecordsAndSessions() throws {
        let replica = try Replica()
        let block = try replica.allocate(100)
        let page = (block - testSettings.heapBase) / 4096
        try replica.table.beginBatch()
        let client = ClientTag(session: 9, sequence: 1)
        let first = try replica.apply(.write(member: 2, pages: [pageWrite(page)], releaseLock: nil, releaseEpoch: 0), client: client)
        // A retry inside the same batch gets the remembered answer.
        #expect(try replica.apply(.alloc(size: 8, member: 1), client: client) == first)
        #expect(try replica.table.pages(from: page, count: 1).first?.writeCount == 1)
        #expect(try replica.table.session(id: 9)?.lastSequence == 1)
        let query = try replica.table.query("SELECT last_sequence FROM sessions WHERE session = 9")
        #expect(query.rows.count == 1)
        try replica.table.endBatch()
        _ = try replica.table.snapshot()
    }

    /// The write records are kept across batches (a page written in every batch gets its row
    /// updated once in a while, not per write); an unbatched write, an allocation, a snapshot
    /// or a reader writes them out first.
    @Test func recordsKeptAcrossBatchesReachTheRowsBeforeAnythingNeedsThem() throws {
        let single = try Replica()
        let batched = try Replica()
        var page: UInt64 = 0
        for replica in [single, batched] {
            let block = try replica.allocate(100)
            page = (block - testSettings.heapBase) / 4096
        }
        func write(_ replica: Replica, _ member: UInt64) throws {
            #expect(try replica.apply(.write(member: member, pages: [pageWrite(page)], releaseLock: nil, releaseEpoch: 0)) == .written(pages: 1, releasedLock: false))
        }
        for member in [2, 3] as [UInt64] {
            try write(single, member)
            try batched.table.beginBatch()
            try write(batched, member)
            try batched.table.endBatch()
        }
        // Outside a batch: the records of both batches go in before this one's own update.
        try write(single, 1)
        try write(batched, 1)
        #expect(try batched.table.pages(from: page, count: 1).first?.lastWriter == 1)
        #expect(try batched.table.canonicalDump() == single.table.canonicalDump())
        try batched.table.beginBatch()
        try write(batched, 2)
        try batched.table.endBatch()
        try write(single, 2)
        // An allocation in a batch writes them out too (outside its savepoint).
        try batched.table.beginBatch()
        try write(batched, 3)
        _ = try batched.allocate(64)
        try batched.table.endBatch()
        try write(single, 3)
        _ = try single.allocate(64)
        try batched.table.beginBatch()
        try write(batched, 1)
        try batched.table.endBatch()
        try write(single, 1)
        // A snapshot carries them.
        let restored = try PageTable(snapshot: try batched.table.snapshot())
        let row = try #require(try restored.pages(from: page, count: 1).first)
        #expect(row.writeCount == 6 && row.lastWriter == 1)
        #expect(try restored.canonicalDump() == single.table.canonicalDump())
        #expect(try batched.table.canonicalDump() == single.table.canonicalDump())
    }
}
