import GallocyCodec
import Testing

@testable import GallocyStateMachine

@Suite struct LockAndBarrierTests {
    @Test func aFreeLockIsGrantedWithEpochOneAndABusyOneNamesItsHolder() throws {
        let replica = try Replica()
        #expect(try replica.apply(.lockAcquire(name: "a", member: 1, ttlMillis: 500, now: 1000)) == .lockGranted(epoch: 1, expiresAt: 1500))
        #expect(try replica.apply(.lockAcquire(name: "a", member: 2, ttlMillis: 500, now: 1499)) == .lockBusy(holder: 1, epoch: 1, expiresAt: 1500))
        let lock = try replica.table.lock(name: "a")
        #expect(lock?.holder == 1 && lock?.epoch == 1 && lock?.grantedIndex == 2)
    }

    @Test func anExpiredLeaseIsTakenOverWithTheNextEpoch() throws {
        let replica = try Replica()
        try replica.apply(.lockAcquire(name: "a", member: 1, ttlMillis: 500, now: 1000))
        // expires_at <= now: expired.
        #expect(try replica.apply(.lockAcquire(name: "a", member: 2, ttlMillis: 500, now: 1500)) == .lockGranted(epoch: 2, expiresAt: 2000))
        // The old holder's release is stale now.
        #expect(try replica.apply(.lockRelease(name: "a", epoch: 1)).rejection?.code == .staleEpoch)
        #expect(try replica.table.lock(name: "a")?.holder == 2)
    }

    @Test func releaseAtTheHeldEpochFreesTheLockAndEpochsKeepRising() throws {
        let replica = try Replica()
        try replica.apply(.lockAcquire(name: "a", member: 1, ttlMillis: 500, now: 0))
        #expect(try replica.apply(.lockRelease(name: "a", epoch: 1)) == .lockReleased)
        #expect(try replica.table.lock(name: "a")?.holder == nil)
        #expect(try replica.apply(.lockRelease(name: "a", epoch: 1)).rejection?.code == .staleEpoch)
        #expect(try replica.apply(.lockAcquire(name: "a", member: 1, ttlMillis: 500, now: 10)) == .lockGranted(epoch: 2, expiresAt: 510))
        #expect(try replica.apply(.lockRelease(name: "never", epoch: 1)).rejection?.code == .staleEpoch)
    }

    @Test func expireReleasesOnlyAtTheCurrentEpoch() throws {
        let replica = try Replica()
        try replica.apply(.lockAcquire(name: "a", member: 1, ttlMillis: 10, now: 0))
        try replica.apply(.lockAcquire(name: "a", member: 2, ttlMillis: 10, now: 20))
        #expect(try replica.apply(.lockExpire(name: "a", epoch: 1)).rejection?.code == .staleEpoch)
        #expect(try replica.table.lock(name: "a")?.holder == 2)
        #expect(try replica.apply(.lockExpire(name: "a", epoch: 2)) == .lockExpired)
        #expect(try replica.table.lock(name: "a")?.holder == nil)
        #expect(try replica.apply(.lockRelease(name: "a", epoch: 2)).rejection?.code == .staleEpoch)
    }

    @Test func aLeaseOfZeroAndAnOverflowingExpiryAreHandled() throws {
        let replica = try Replica()
        #expect(try replica.apply(.lockAcquire(name: "a", member: 1, ttlMillis: 0, now: 0)).rejection?.code == .invalidArgument)
        let result = try replica.apply(.lockAcquire(name: "a", member: 1, ttlMillis: UInt64.max, now: 5))
        #expect(result == .lockGranted(epoch: 1, expiresAt: UInt64(Int64.max)))
    }

    @Test func aBarrierOpensWhenAllParticipantsArriveAndStartsTheNextGeneration() throws {
        let replica = try Replica()
        #expect(try replica.apply(.barrierArrive(name: "b", participants: 3, member: 1)) == .barrier(opened: false, generation: 0))
        #expect(try replica.apply(.barrierArrive(name: "b", participants: 3, member: 2)) == .barrier(opened: false, generation: 0))
        #expect(try replica.apply(.barrierArrive(name: "b", participants: 3, member: 3)) == .barrier(opened: true, generation: 0))
        let openedAt = replica.nextIndex - 1
        var state = try replica.table.barrier(name: "b")
        #expect(state?.generation == 1 && state?.arrived == 0 && state?.openedIndex == openedAt)
        #expect(try replica.apply(.barrierArrive(name: "b", participants: 3, member: 1)) == .barrier(opened: false, generation: 1))
        state = try replica.table.barrier(name: "b")
        #expect(state?.arrived == 1 && state?.openedIndex == openedAt)
    }

    @Test func aBarrierOfOneOpensAtOnce() throws {
        let replica = try Replica()
        #expect(try replica.apply(.barrierArrive(name: "solo", participants: 1, member: 1)) == .barrier(opened: true, generation: 0))
        #expect(try replica.apply(.barrierArrive(name: "solo", participants: 1, member: 1)) == .barrier(opened: true, generation: 1))
    }

    @Test func aParticipantCountThatDisagreesWithinAGenerationIsRejected() throws {
        let replica = try Replica()
        try replica.apply(.barrierArrive(name: "b", participants: 2, member: 1))
        #expect(try replica.apply(.barrierArrive(name: "b", participants: 3, member: 2)).rejection?.code == .participantsMismatch)
        #expect(try replica.apply(.barrierArrive(name: "b", participants: 0, member: 2)).rejection?.code == .participantsMismatch)
        #expect(try replica.apply(.barrierArrive(name: "b", participants: 2, member: 2)) == .barrier(opened: true, generation: 0))
        // A new generation may use a new count.
        #expect(try replica.apply(.barrierArrive(name: "b", participants: 4, member: 2)) == .barrier(opened: false, generation: 1))
    }
}
