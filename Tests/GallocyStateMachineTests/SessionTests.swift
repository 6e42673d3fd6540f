import GallocyCodec
import Testing

@testable import GallocyStateMachine

@Suite struct SessionTests {
    @Test func aRetriedRequestReturnsTheSameResultAndAppliesOnce() throws {
        let replica = try Replica()
        let tag = ClientTag(session: 77, sequence: 1)
        let first = try replica.apply(.alloc(size: 64, member: 1), client: tag)
        let retry = try replica.apply(.alloc(size: 64, member: 1), client: tag)
        #expect(first == retry)
        #expect(try replica.table.allocations().count == 1)
        let next = try replica.apply(.alloc(size: 64, member: 1), client: ClientTag(session: 77, sequence: 2))
        #expect(next != first)
        #expect(try replica.table.allocations().count == 2)
    }

    @Test func aRetriedRejectionIsRememberedToo() throws {
        let replica = try Replica()
        let tag = ClientTag(session: 5, sequence: 10)
        let first = try replica.apply(.free(address: testSettings.heapBase), client: tag)
        #expect(first.rejection?.code == .notAllocated)
        _ = try replica.allocate(8)  // now a block does start there
        #expect(try replica.apply(.free(address: testSettings.heapBase), client: tag) == first)
        #expect(try replica.table.allocations().count == 1)
    }

    @Test func aRetriedLockAcquireDoesNotTakeANewEpoch() throws {
        let replica = try Replica()
        let tag = ClientTag(session: 9, sequence: 1)
        let body = CommandBody.lockAcquire(name: "l", member: 1, ttlMillis: 100, now: 0)
        let first = try replica.apply(body, client: tag)
        #expect(first == .lockGranted(epoch: 1, expiresAt: 100))
        #expect(try replica.apply(body, client: tag) == first)
        #expect(try replica.table.lock(name: "l")?.epoch == 1)
    }

    @Test func anOlderSequenceThanTheLastIsAStaleRequest() throws {
        let replica = try Replica()
        try replica.apply(.alloc(size: 8, member: 1), client: ClientTag(session: 3, sequence: 4))
        let old = try replica.apply(.alloc(size: 8, member: 1), client: ClientTag(session: 3, sequence: 2))
        #expect(old.rejection?.code == .staleRequest)
        #expect(try replica.table.allocations().count == 1)
    }

    @Test func sessionZeroIsNeverDeduplicated() throws {
        let replica = try Replica()
        try replica.apply(.alloc(size: 8, member: 1))
        try replica.apply(.alloc(size: 8, member: 1))
        #expect(try replica.table.allocations().count == 2)
        #expect(try replica.table.query("SELECT count(*) FROM sessions").rows == [[.integer(0)]])
    }

    @Test(arguments: [
        ApplyResult.bootstrapped, .noop, .allocated(address: 0x7f00_0000_1000),
        .freed(address: 0x7f00_0000_1000, extent: 4104, zeroedPages: 1..<2), .freed(address: 8, extent: 8, zeroedPages: 3..<3),
        .written(pages: 16, releasedLock: true), .atomicAccepted(address: 8), .lockGranted(epoch: 3, expiresAt: 99),
        .lockBusy(holder: 2, epoch: 4, expiresAt: UInt64(Int64.max)), .lockReleased, .lockExpired,
        .barrier(opened: true, generation: 12), .rootSet, .rejected(Rejection(.staleEpoch, "lock \"é\" moved on")),
    ])
    func storedResultsDecodeToTheSameResult(result: ApplyResult) throws {
        #expect(try ApplyResult(encoded: result.encoded) == result)
    }

    @Test func aCorruptStoredResultIsAnError() {
        #expect(throws: StateMachineError.self) { try ApplyResult(encoded: [200]) }
        #expect(throws: StateMachineError.self) { try ApplyResult(encoded: [3]) }
        #expect(throws: StateMachineError.self) { try ApplyResult(encoded: [2, 0]) }
    }
}
