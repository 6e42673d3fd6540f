import GallocyCodec
import Testing

@testable import GallocyStateMachine

@Suite struct SnapshotAndDumpTests {
    private func busyReplica() throws -> Replica {
        let replica = try Replica()
        let a = try replica.allocate(5000)
        _ = try replica.allocate(64)
        try replica.apply(.write(member: 2, pages: [pageWrite(0), pageWrite(1)], releaseLock: nil, releaseEpoch: 0))
        try replica.apply(.lockAcquire(name: "lock 'quoted'", member: 2, ttlMillis: 100, now: 7), client: ClientTag(session: 4, sequence: 1))
        try replica.apply(.barrierArrive(name: "b", participants: 2, member: 1))
        try replica.apply(.setRoot(name: "root", address: a))
        try replica.table.setMembers([Member(id: 1, role: "voter", address: "127.0.0.1:1")])
        return replica
    }

    @Test func dumpListsEveryTableInKeyOrder() throws {
        let replica = try busyReplica()
        let dump = try replica.table.canonicalDump()
        let tables = dump.split(separator: "\n").filter { $0.hasPrefix("table ") }.map { $0.split(separator: " ")[1] }
        #expect(tables.map(String.init) == PageTable.tables.map(\.name))
        #expect(dump.contains("0\t'lock ''quoted'''\t2\t1\t107\t"))
        #expect(dump.contains("table pages (company, page, state, blocks, last_writer"))
    }

    @Test func snapshotRestoresToTheSameDigestAndKeepsApplying() throws {
        let replica = try busyReplica()
        let snapshot = try replica.table.snapshot()
        let restored = try PageTable(snapshot: snapshot)
        #expect(try restored.digest() == replica.table.digest())
        #expect(try restored.canonicalDump() == replica.table.canonicalDump())
        #expect(restored.settings() == testSettings)
        #expect(restored.appliedIndex() == replica.table.appliedIndex())

        // Both continue identically from the snapshot.
        let next = (replica.table.appliedIndex() ?? 0) + 1
        let command = Command(body: .alloc(size: 100, member: 3))
        #expect(try restored.apply(command, index: next) == replica.table.apply(command, index: next))
        #expect(try restored.digest() == replica.table.digest())
        // The session survived: a retry is still deduplicated after the restore.
        let retry = Command(client: ClientTag(session: 4, sequence: 1), body: .lockAcquire(name: "lock 'quoted'", member: 2, ttlMillis: 100, now: 7))
        #expect(try restored.apply(retry, index: next + 1) == .lockGranted(epoch: 1, expiresAt: 107))
    }

    @Test func restoreReplacesAnExistingTable() throws {
        let source = try busyReplica()
        let target = try Replica()
        _ = try target.allocate(999)
        try target.table.restore(snapshot: try source.table.snapshot())
        #expect(try target.table.digest() == source.table.digest())
        // A restored table snapshots again, and grows past the image it was restored from.
        for _ in 0..<50 { _ = try target.allocate(4096) }
        let again = try PageTable(snapshot: try target.table.snapshot())
        #expect(try again.digest() == target.table.digest())
    }

    @Test func aCorruptSnapshotIsRefusedAndLeavesTheTableAsItWas() throws {
        let replica = try busyReplica()
        let digest = try replica.table.digest()
        var snapshot = try replica.table.snapshot()
        snapshot[snapshot.count / 2] ^= 0xFF
        for bad in [snapshot, [], [1, 2, 3], Array(snapshot.prefix(20))] {
            do {
                try replica.table.restore(snapshot: bad)
                Issue.record("a corrupt snapshot of \(bad.count) bytes was restored")
            } catch {
                #expect(error.code == .badSnapshot)
            }
        }
        #expect(try replica.table.digest() == digest)
    }

    @Test func digestsDifferWhenTheTablesDiffer() throws {
        let first = try Replica()
        let second = try Replica()
        #expect(try first.table.digest() == second.table.digest())
        try first.apply(.alloc(size: 8, member: 1))
        try second.apply(.alloc(size: 8, member: 2))
        #expect(try first.table.digest() != second.table.digest())
    }

    @Test func pagesQueryClipsToTheHeapAndFillsZeroRows() throws {
        let replica = try busyReplica()
        let pageCount = testSettings.pageCount
        #expect(try replica.table.pages(from: pageCount - 2, count: 10).count == 2)
        #expect(try replica.table.pages(from: pageCount, count: 10).isEmpty)
        let rows = try replica.table.pages(from: 0, count: 3)
        #expect(rows.map(\.page) == [0, 1, 2])
        #expect(rows[0].lastWriter == 2 && rows[2].state == .zero)
        #expect(replica.table.page(containing: testSettings.heapBase + 4097) == 1)
        #expect(replica.table.page(containing: testSettings.heapBase - 1) == nil)
        #expect(try replica.table.isAllocated(address: testSettings.heapBase, length: 5000))
        #expect(try !replica.table.isAllocated(address: testSettings.heapBase, length: 5001))
    }
}
