import GallocyCodec
import Testing

@testable import GallocyStateMachine

@Suite struct PageTableApplyTests {
    @Test func bootstrapRecordsSettingsAndASecondDifferentOneIsRejected() throws {
        let replica = try Replica()
        #expect(replica.table.settings() == testSettings)
        #expect(try replica.apply(.bootstrap(testSettings)) == .bootstrapped)
        var other = testSettings
        other.heapSize *= 2
        let result = try replica.apply(.bootstrap(other))
        #expect(result.rejection?.code == .settingsConflict)
        #expect(replica.table.settings() == testSettings)
        #expect(try replica.table.query("SELECT heap_size FROM settings").rows == [[.integer(1 << 20)]])
    }

    @Test func invalidBootstrapSettingsAreRejected() throws {
        let replica = try Replica(settings: nil)
        let bad = [
            ClusterSettings(clusterID: 1, heapBase: 0x1000, heapSize: 8192, pageSize: 3000),
            ClusterSettings(clusterID: 1, heapBase: 0x1000, heapSize: 5000, pageSize: 4096),
            ClusterSettings(clusterID: 1, heapBase: 0x1001, heapSize: 8192, pageSize: 4096),
            ClusterSettings(clusterID: 1, heapBase: UInt64.max - 4095, heapSize: 8192, pageSize: 4096),
        ]
        for settings in bad {
            #expect(try replica.apply(.bootstrap(settings)).rejection?.code == .invalidSettings)
        }
        #expect(replica.table.settings() == nil)
    }

    @Test func commandsBeforeBootstrapAreRejectedButNoopApplies() throws {
        let replica = try Replica(settings: nil)
        #expect(try replica.apply(.noop) == .noop)
        #expect(try replica.apply(.alloc(size: 8, member: 1)).rejection?.code == .notBootstrapped)
        #expect(try replica.apply(.lockAcquire(name: "l", member: 1, ttlMillis: 10, now: 0)).rejection?.code == .notBootstrapped)
        #expect(replica.table.appliedIndex() == 3)
    }

    @Test func allocMarksCoveredPagesAllocatedAndFreeReturnsThemToZero() throws {
        let replica = try Replica()
        let address = try replica.allocate(3 * 4096 + 1)
        #expect(address == testSettings.heapBase)
        let rows = try replica.table.pages(from: 0, count: 5)
        #expect(rows.map(\.state) == [.allocated, .allocated, .allocated, .allocated, .zero])
        #expect(rows[4].address == testSettings.heapBase + 4 * 4096)
        #expect(try replica.table.allocation(containing: address + 12288)?.address == address)
        #expect(try replica.table.allocation(containing: address + 12289) == nil)

        // Pages 0...3 held only this block: all four go back to zero.
        #expect(try replica.apply(.free(address: address)) == .freed(address: address, extent: 3 * 4096 + 8, zeroedPages: 0..<4))
        #expect(try replica.table.pages(from: 0, count: 5).allSatisfy { $0.state == .zero })
        #expect(try replica.table.query("SELECT count(*) FROM pages").rows == [[.integer(0)]])
        try checkAllocatorInvariants(replica.table)
    }

    @Test func aPageSharedByTwoBlocksStaysAllocatedUntilBothAreFreed() throws {
        let replica = try Replica()
        let a = try replica.allocate(100)
        let b = try replica.allocate(100)
        #expect(b == a + 104)
        #expect(try replica.table.pages(from: 0, count: 1).first?.blocks == 2)
        #expect(try replica.apply(.free(address: a)) == .freed(address: a, extent: 104, zeroedPages: 1..<1))
        #expect(try replica.table.pages(from: 0, count: 1).first?.state == .allocated)
        #expect(try replica.apply(.free(address: b)) == .freed(address: b, extent: 104, zeroedPages: 0..<1))
        #expect(try replica.table.pages(from: 0, count: 1).first?.state == .zero)
    }

    @Test func freeOfAnAddressWhereNoBlockStartsIsNotAllocated() throws {
        let replica = try Replica()
        let address = try replica.allocate(64)
        #expect(try replica.apply(.free(address: address + 8)).rejection?.code == .notAllocated)
        #expect(try replica.apply(.free(address: address)).isApplied)
        #expect(try replica.apply(.free(address: address)).rejection?.code == .notAllocated)
    }

    @Test func freeNamesOnlyThePagesThatNoOtherBlockOverlaps() throws {
        let replica = try Replica()
        let head = try replica.allocate(64)  // page 0
        let big = try replica.allocate(3 * 4096 + 100)  // pages 1...4, page-aligned
        let tail = try replica.allocate(64)  // first fit: page 0, after `head`
        let after = try replica.allocate(4000)  // page 4, after the end of `big`
        #expect(tail == head + 64 && after == big + 3 * 4096 + 104)
        // Page 4 is shared with `after`, pages 1...3 are big's alone.
        #expect(try replica.apply(.free(address: big)) == .freed(address: big, extent: 3 * 4096 + 104, zeroedPages: 1..<4))
        #expect(try replica.table.pages(from: 0, count: 5).map(\.state) == [.allocated, .zero, .zero, .zero, .allocated])
        try checkAllocatorInvariants(replica.table)
    }

    @Test func writeRecordsWriterIndexAndCountOnEveryPage() throws {
        let replica = try Replica()
        _ = try replica.allocate(2 * 4096)
        let result = try replica.apply(.write(member: 7, pages: [pageWrite(0), pageWrite(1)], releaseLock: nil, releaseEpoch: 0))
        #expect(result == .written(pages: 2, releasedLock: false))
        let index = replica.nextIndex - 1
        try replica.apply(.write(member: 9, pages: [pageWrite(1)], releaseLock: nil, releaseEpoch: 0))
        let rows = try replica.table.pages(from: 0, count: 2)
        #expect(rows[0].lastWriter == 7 && rows[0].lastWriteIndex == index && rows[0].writeCount == 1)
        #expect(rows[1].lastWriter == 9 && rows[1].lastWriteIndex == index + 1 && rows[1].writeCount == 2)
    }

    @Test func writeToAPageOutsideAllocatedMemoryIsRejectedAndAppliesNothing() throws {
        let replica = try Replica()
        _ = try replica.allocate(4096)
        let before = try replica.table.canonicalDump()
        let result = try replica.apply(.write(member: 7, pages: [pageWrite(0), pageWrite(5)], releaseLock: nil, releaseEpoch: 0))
        #expect(result.rejection?.code == .outsideAllocation)
        let beyond = try replica.apply(.write(member: 7, pages: [pageWrite(1 << 40)], releaseLock: nil, releaseEpoch: 0))
        #expect(beyond.rejection?.code == .outsideAllocation)
        // Only the progress row moved.
        let after = try replica.table.canonicalDump()
        #expect(after.replacingProgress() == before.replacingProgress())
        #expect(try replica.table.pages(from: 0, count: 1).first?.writeCount == 0)
    }

    @Test func aWriteOfRunsOfPagesChecksEveryPageOfEveryRun() throws {
        let replica = try Replica()
        let a = try replica.allocate(3 * 4096)  // pages 0...2
        _ = try replica.allocate(2 * 4096)  // pages 3...4
        try replica.apply(.free(address: a))  // pages 0...2 are zero again
        _ = try replica.allocate(2 * 4096)  // pages 0...1
        // Pages 0, 1 | 3, 4 | 4 | 2: the run 3...4 is fine, page 2 is not allocated.
        let pages = [0, 1, 3, 4, 4, 2].map { pageWrite(UInt64($0)) }
        let result = try replica.apply(.write(member: 1, pages: pages, releaseLock: nil, releaseEpoch: 0))
        #expect(result.rejection == Rejection(.outsideAllocation, "page 2 is not allocated"))
        #expect(try replica.table.pages(from: 0, count: 5).map(\.writeCount) == [0, 0, 0, 0, 0])

        let good = [0, 1, 3, 4, 4].map { pageWrite(UInt64($0)) }
        #expect(try replica.apply(.write(member: 1, pages: good, releaseLock: nil, releaseEpoch: 0)) == .written(pages: 5, releasedLock: false))
        #expect(try replica.table.pages(from: 0, count: 5).map(\.writeCount) == [1, 1, 0, 1, 2])
        let straddling = [1, 2, 3].map { pageWrite(UInt64($0)) }
        #expect(try replica.apply(.write(member: 1, pages: straddling, releaseLock: nil, releaseEpoch: 0)).rejection?.code == .outsideAllocation)
    }

    @Test func writeThatReleasesALockAppliesOnlyAtTheHeldEpoch() throws {
        let replica = try Replica()
        _ = try replica.allocate(4096)
        guard case .lockGranted(let epoch, _) = try replica.apply(.lockAcquire(name: "m", member: 3, ttlMillis: 1000, now: 10)) else {
            throw TestFailure("lock not granted")
        }
        let stale = try replica.apply(.write(member: 3, pages: [pageWrite(0)], releaseLock: "m", releaseEpoch: epoch + 1))
        #expect(stale.rejection?.code == .staleEpoch)
        #expect(try replica.table.pages(from: 0, count: 1).first?.writeCount == 0)
        #expect(try replica.table.lock(name: "m")?.holder == 3)

        let written = try replica.apply(.write(member: 3, pages: [pageWrite(0)], releaseLock: "m", releaseEpoch: epoch))
        #expect(written == .written(pages: 1, releasedLock: true))
        #expect(try replica.table.pages(from: 0, count: 1).first?.writeCount == 1)
        #expect(try replica.table.lock(name: "m")?.holder == nil)
        // Released: the same epoch no longer releases anything.
        let again = try replica.apply(.write(member: 3, pages: [pageWrite(0)], releaseLock: "m", releaseEpoch: epoch))
        #expect(again.rejection?.code == .staleEpoch)
    }

    @Test func atomicAddressMustBeAlignedAndInsideABlock() throws {
        let replica = try Replica()
        let address = try replica.allocate(16)
        #expect(try replica.apply(.atomic(address: address + 8, op: .add(1))) == .atomicAccepted(address: address + 8))
        #expect(try replica.apply(.atomic(address: address + 4, op: .add(1))).rejection?.code == .misaligned)
        #expect(try replica.apply(.atomic(address: address + 16, op: .swap(1))).rejection?.code == .outsideAllocation)
        let odd = try replica.allocate(12)  // the word at +8 runs past the 12 bytes asked for
        #expect(try replica.apply(.atomic(address: odd + 8, op: .swap(1))).rejection?.code == .outsideAllocation)
    }

    @Test func setRootStoresReplacesAndRemoves() throws {
        let replica = try Replica()
        let address = try replica.allocate(64)
        #expect(try replica.apply(.setRoot(name: "job", address: address)) == .rootSet)
        #expect(try replica.table.root(name: "job") == address)
        try replica.apply(.setRoot(name: "job", address: address + 8))
        #expect(try replica.table.root(name: "job") == address + 8)
        try replica.apply(.setRoot(name: "job", address: 0))
        #expect(try replica.table.root(name: "job") == nil)
        #expect(try replica.apply(.setRoot(name: "job", address: 0x10)).rejection?.code == .invalidArgument)
    }

    @Test func applyingAnIndexTwiceOrOutOfOrderThrows() throws {
        let table = try PageTable()
        _ = try table.apply(Command(body: .bootstrap(testSettings)), index: 5)
        do {
            _ = try table.apply(Command(body: .noop), index: 5)
            Issue.record("index 5 applied twice")
        } catch {
            #expect(error.code == .indexOutOfOrder)
        }
        #expect(try table.apply(Command(body: .noop), index: 9) == .noop)
        #expect(table.appliedIndex() == 9)
    }

    @Test func companiesAreIndependent() throws {
        let replica = try Replica()
        var second = testSettings
        second.heapBase += testSettings.heapSize
        #expect(try replica.apply(.bootstrap(second), company: 1) == .bootstrapped)
        let a = try replica.allocate(64)
        guard case .allocated(let b) = try replica.apply(.alloc(size: 64, member: 1), company: 1) else {
            throw TestFailure("company 1 alloc failed")
        }
        #expect(a == testSettings.heapBase && b == second.heapBase)
        #expect(try replica.apply(.free(address: b)).rejection?.code == .notAllocated)
        try checkAllocatorInvariants(replica.table, company: 0)
        try checkAllocatorInvariants(replica.table, company: 1)
    }

    @Test func setMembersReplacesTheMemberList() throws {
        let table = try PageTable()
        try table.setMembers([Member(id: 1, role: "voter", address: "127.0.0.1:7001"), Member(id: 2)])
        try table.setMembers([Member(id: 3, role: "learner"), Member(id: 1, role: "voter")])
        #expect(try table.members() == [Member(id: 1, role: "voter"), Member(id: 3, role: "learner")])
    }
}

extension String {
    /// The dump without the `progress` table's rows, which every applied entry changes.
    func replacingProgress() -> String {
        var kept: [Substring] = []
        var inProgress = false
        for line in split(separator: "\n") {
            if line.hasPrefix("table ") { inProgress = line.hasPrefix("table progress") }
            else if inProgress { continue }
            kept.append(line)
        }
        return kept.joined(separator: "\n")
    }
}
