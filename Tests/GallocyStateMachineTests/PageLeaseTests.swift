import GallocyCodec
import Testing

@testable import GallocyStateMachine

/// The page leases of sequential memory (issue 6) in the state machine: allocation in a mode,
/// requests, the queue, releases that carry the holder's diff, expiries, frees, and the effects
/// every member's runtime is told.
@Suite struct PageLeaseTests {
    final class Recorder: PageLeaseObserver {
        var effects: [LeaseEffect] = []
        func applyLeaseEffects(_ effects: [LeaseEffect]) { self.effects += effects }
        func take() -> [LeaseEffect] {
            defer { effects = [] }
            return effects
        }
    }

    /// A state machine with a heap and a recorder of lease effects; `apply` hands out indexes.
    final class Machine {
        let machine: StateMachine
        let recorder = Recorder()
        var index: UInt64 = 0

        init() throws {
            machine = try StateMachine()
            _ = try apply(.bootstrap(testSettings))
            machine.heap?.leaseObserver = recorder
        }

        @discardableResult
        func apply(_ body: CommandBody) throws -> ApplyResult {
            index += 1
            return try machine.apply(Command(body: body), index: index)
        }

        var table: PageTable { machine.pageTable }

        func page(of address: UInt64) -> UInt64 { (address - testSettings.heapBase) / UInt64(testSettings.pageSize) }

        func sequential(_ size: UInt64) throws -> UInt64 {
            guard case .allocated(let address) = try apply(.allocIn(size: size, member: 1, mode: .sequential)) else {
                throw TestFailure("allocIn failed")
            }
            return address
        }
    }

    static func request(_ page: UInt64, by member: UInt64, write: Bool = true, ttl: UInt64 = 1000, now: UInt64 = 0)
        -> CommandBody
    {
        .leaseRequest(page: page, member: member, write: write, ttlMillis: ttl, now: now)
    }

    @Test func sequentialMemoryTakesWholePagesAndRecordsItsMode() throws {
        let m = try Machine()
        let small = try m.allocateRelease(24)
        let address = try m.sequential(100)
        #expect(address % UInt64(testSettings.pageSize) == 0)
        let page = m.page(of: address)
        #expect(page != m.page(of: small))
        #expect(try m.table.pageLease(page: page) == PageLeaseRow(page: page, holder: nil, grant: 0, expiresAt: nil))
        #expect(try m.table.pageLease(page: page + 1) == nil)
        #expect(m.recorder.take() == [.sequential(pages: page...page)])
        // The block is a whole page: the next allocation does not share it.
        let next = try m.allocateRelease(8)
        #expect(m.page(of: next) != page)
        let two = try m.sequential(4097)
        #expect(try m.table.pageLeases().count == 3)
        #expect(m.recorder.take() == [.sequential(pages: m.page(of: two)...m.page(of: two) + 1)])
        // Release-mode memory is not leased.
        #expect(try m.apply(Self.request(m.page(of: small), by: 2)).rejection?.code == .invalidArgument)
    }

    @Test func requestsAreGrantedOrQueuedInLogOrder() throws {
        let m = try Machine()
        let page = m.page(of: try m.sequential(8))
        _ = m.recorder.take()
        #expect(try m.apply(Self.request(page, by: 1, now: 100)) == .lease(page: page, holder: 1, grant: 3, expiresAt: 1100))
        #expect(m.recorder.take() == [.granted(page: page, holder: 1, grant: 3, expiresAt: 1100)])
        // Member 3 first, then 2 (read, then write: one place, upgraded), then the holder itself.
        #expect(try m.apply(Self.request(page, by: 3)) == .lease(page: page, holder: 1, grant: 3, expiresAt: 1100))
        try m.apply(Self.request(page, by: 2, write: false))
        try m.apply(Self.request(page, by: 2, write: true, ttl: 50))
        try m.apply(Self.request(page, by: 1))
        #expect(
            m.recorder.take() == [
                .requested(page: page, holder: 1, grant: 3, requester: 3),
                .requested(page: page, holder: 1, grant: 3, requester: 2),
                .requested(page: page, holder: 1, grant: 3, requester: 2),
                .requested(page: page, holder: 1, grant: 3, requester: 1),
            ])
        let queue = try m.table.leaseQueue(page: page)
        #expect(queue.map(\.member) == [3, 2, 1])
        #expect(queue.map(\.write) == [true, true, true])
        #expect(queue[1].ttlMillis == 50)
        // Each release passes the page to the next in the queue, in the same entry.
        #expect(
            try m.apply(.leaseRelease(page: page, member: 1, grant: 3, diff: .empty, now: 500))
                == .lease(page: page, holder: 3, grant: 8, expiresAt: 1500))
        #expect(
            m.recorder.take() == [
                .ended(page: page, holder: 1, grant: 3, published: true),
                .granted(page: page, holder: 3, grant: 8, expiresAt: 1500),
                .requested(page: page, holder: 3, grant: 8, requester: 2),
            ])
        #expect(
            try m.apply(.leaseRelease(page: page, member: 3, grant: 8, diff: .empty, now: 600))
                == .lease(page: page, holder: 2, grant: 9, expiresAt: 650))
        #expect(
            try m.apply(.leaseRelease(page: page, member: 2, grant: 9, diff: .empty, now: 700))
                == .lease(page: page, holder: 1, grant: 10, expiresAt: 1700))
        _ = m.recorder.take()
        // The last one, with nobody waiting: the page is readable by all.
        #expect(
            try m.apply(.leaseRelease(page: page, member: 1, grant: 10, diff: .empty, now: 800))
                == .lease(page: page, holder: nil, grant: 10, expiresAt: 0))
        #expect(m.recorder.take() == [.ended(page: page, holder: 1, grant: 10, published: true), .shared(page: page)])
        #expect(try m.table.leaseQueue(page: page).isEmpty)
    }

    @Test func aReleasePublishesItsDiffAndAStaleOneIsRejectedWithItsDiff() throws {
        let m = try Machine()
        let address = try m.sequential(64)
        let page = m.page(of: address)
        try m.apply(Self.request(page, by: 1))  // grant 3
        let diff = PageDiff(writing: [1, 2, 3, 4], atOffset: 8)
        // Wrong grant, wrong member: rejected, nothing written.
        #expect(try m.apply(.leaseRelease(page: page, member: 1, grant: 2, diff: diff, now: 0)).rejection?.code == .staleEpoch)
        #expect(try m.apply(.leaseRelease(page: page, member: 2, grant: 3, diff: diff, now: 0)).rejection?.code == .staleEpoch)
        #expect(try m.machine.read(address: address + 8, length: 4) == [0, 0, 0, 0])
        _ = m.recorder.take()
        #expect(try m.apply(.leaseRelease(page: page, member: 1, grant: 3, diff: diff, now: 0)).isApplied)
        #expect(try m.machine.read(address: address + 8, length: 4) == [1, 2, 3, 4])
        // Released twice: the second is stale.
        let again = PageDiff(writing: [9], atOffset: 0)
        #expect(try m.apply(.leaseRelease(page: page, member: 1, grant: 3, diff: again, now: 0)).rejection?.code == .staleEpoch)
        #expect(try m.machine.read(address: address, length: 1) == [0])
        #expect(m.recorder.take() == [.ended(page: page, holder: 1, grant: 3, published: true), .shared(page: page)])
    }

    @Test func anExpiryEndsOnlyTheCurrentLeaseAndLosesItsWrites() throws {
        let m = try Machine()
        let address = try m.sequential(64)
        let page = m.page(of: address)
        try m.apply(Self.request(page, by: 1, ttl: 100, now: 0))  // grant 3, until 100
        try m.apply(Self.request(page, by: 2, ttl: 100, now: 50))
        _ = m.recorder.take()
        #expect(try m.apply(.leaseExpire(page: page, grant: 2, now: 200)).rejection?.code == .staleEpoch)
        #expect(try m.apply(.leaseExpire(page: page, grant: 3, now: 200)) == .lease(page: page, holder: 2, grant: 6, expiresAt: 300))
        #expect(
            m.recorder.take() == [
                .ended(page: page, holder: 1, grant: 3, published: false),
                .granted(page: page, holder: 2, grant: 6, expiresAt: 300),
            ])
        // The late holder's release (its writes) is refused.
        let diff = PageDiff(writing: [7], atOffset: 0)
        #expect(try m.apply(.leaseRelease(page: page, member: 1, grant: 3, diff: diff, now: 210)).rejection?.code == .staleEpoch)
        #expect(try m.machine.read(address: address, length: 1) == [0])
        #expect(try m.apply(.leaseExpire(page: page, grant: 3, now: 400)).rejection?.code == .staleEpoch)
        #expect(try m.apply(.leaseExpire(page: page, grant: 6, now: 400)) == .lease(page: page, holder: nil, grant: 6, expiresAt: 0))
        #expect(try m.table.expiredPageLeases(now: 10_000).isEmpty)
    }

    @Test func aQueuedReadSharesThePageAndEmptiesTheQueue() throws {
        let m = try Machine()
        let page = m.page(of: try m.sequential(8))
        // With no holder a read needs nothing: the page is readable everywhere.
        #expect(try m.apply(Self.request(page, by: 2, write: false)) == .lease(page: page, holder: nil, grant: 0, expiresAt: 0))
        try m.apply(Self.request(page, by: 1))  // grant 4
        try m.apply(Self.request(page, by: 2, write: false))
        try m.apply(Self.request(page, by: 3))
        _ = m.recorder.take()
        #expect(
            try m.apply(.leaseRelease(page: page, member: 1, grant: 4, diff: .empty, now: 0))
                == .lease(page: page, holder: nil, grant: 4, expiresAt: 0))
        #expect(m.recorder.take() == [.ended(page: page, holder: 1, grant: 4, published: true), .shared(page: page)])
        #expect(try m.table.leaseQueue(page: page).isEmpty)
        // The writer that waited asks again and gets it.
        #expect(try m.apply(Self.request(page, by: 3)) == .lease(page: page, holder: 3, grant: 8, expiresAt: 1000))
    }

    @Test func freeingSequentialMemoryEndsItsLeases() throws {
        let m = try Machine()
        let address = try m.sequential(5000)
        let page = m.page(of: address)
        try m.apply(Self.request(page, by: 1))
        try m.apply(Self.request(page, by: 2))
        _ = m.recorder.take()
        #expect(try m.apply(.free(address: address)).isApplied)
        #expect(
            m.recorder.take() == [
                .releaseMode(page: page, holder: 1, grant: 3), .releaseMode(page: page + 1, holder: nil, grant: 0),
            ])
        #expect(try m.table.pageLeases().isEmpty)
        #expect(try m.table.leaseQueue(page: page).isEmpty)
        #expect(try m.apply(Self.request(page, by: 1)).rejection?.code == .invalidArgument)
        // Release-mode memory in the same place later is not leased.
        let again = try m.allocateRelease(5000)
        #expect(again == address)
        #expect(try m.table.pageLease(page: page) == nil)
    }

    @Test func replicasApplyingTheSameLeaseCommandsAgreeAndASnapshotKeepsTheLeases() throws {
        var rng = SplitMix64(seed: 6)
        let a = try Machine()
        let b = try Machine()
        var pages: [UInt64] = []
        for _ in 0..<4 {
            let address = try a.sequential(4096)
            _ = try b.sequential(4096)
            pages.append(a.page(of: address))
        }
        for step in 0..<600 {
            let page = pages[Int(rng.next() % 4)]
            let member = rng.next() % 3 + 1
            let lease = try a.table.pageLease(page: page)
            let body: CommandBody
            switch rng.next() % 4 {
            case 0, 1: body = Self.request(page, by: member, write: rng.next() % 3 != 0, ttl: 100, now: UInt64(step))
            case 2:
                body = .leaseRelease(
                    page: page, member: lease?.holder ?? member, grant: (lease?.grant ?? 0) &+ rng.next() % 2,
                    diff: PageDiff(writing: [UInt8(truncatingIfNeeded: step)], atOffset: Int(rng.next() % 4096)),
                    now: UInt64(step))
            default: body = .leaseExpire(page: page, grant: lease?.grant ?? 0, now: UInt64(step))
            }
            #expect(try a.apply(body) == b.apply(body))
        }
        #expect(a.recorder.effects == b.recorder.effects)
        #expect(try a.machine.canonicalDigest() == b.machine.canonicalDigest())
        // A snapshot restores the leases, and tells the runtime how to set the pages.
        let restored = try StateMachine(snapshot: try a.machine.snapshot())
        #expect(try restored.canonicalDigest() == a.machine.canonicalDigest())
        let effects = try restored.pageTable.leaseEffectsFromTables()
        #expect(effects.first == .reset)
        #expect(effects.filter { if case .sequential = $0 { return true } else { return false } }.count == 4)
    }
}

extension PageLeaseTests.Machine {
    func allocateRelease(_ size: UInt64) throws -> UInt64 {
        guard case .allocated(let address) = try apply(.alloc(size: size, member: 1)) else { throw TestFailure("alloc failed") }
        return address
    }
}
