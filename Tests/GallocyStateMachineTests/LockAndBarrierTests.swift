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

    // MARK: Arrivals per member

    @Test func aMemberArrivingTwiceDoesNotOpenTheBarrierEarly() throws {
        let replica = try Replica()
        #expect(try replica.apply(.barrierArrive(name: "b", participants: 2, member: 1)) == .barrier(opened: false, generation: 0))
        // The same member again (a process restarted after SIGKILL): counted once.
        #expect(try replica.apply(.barrierArrive(name: "b", participants: 2, member: 1)) == .barrier(opened: false, generation: 0))
        var state = try #require(try replica.table.barrier(name: "b"))
        #expect(state.arrived == 1 && state.arrivedMembers == [1] && state.generation == 0)
        #expect(try replica.apply(.barrierArrive(name: "b", participants: 2, member: 2)) == .barrier(opened: true, generation: 0))
        state = try #require(try replica.table.barrier(name: "b"))
        #expect(state.arrived == 0 && state.arrivedMembers == [] && state.generation == 1)
    }

    @Test func threeMembersOneArrivingTwiceOpenOnTheThirdDistinctMember() throws {
        let replica = try Replica()
        for member: UInt64 in [2, 1, 2] {
            #expect(try replica.apply(.barrierArrive(name: "b", participants: 3, member: member)) == .barrier(opened: false, generation: 0))
        }
        // The generation-aware arrival dedups the same way.
        #expect(
            try replica.apply(.barrierArriveAt(name: "b", participants: 3, member: 1, generation: 0))
                == .barrier(opened: false, generation: 0))
        var state = try #require(try replica.table.barrier(name: "b"))
        #expect(state.arrived == 2 && state.arrivedMembers == [1, 2])
        let rows = try replica.table.query("SELECT name, member, arrived_index FROM barrier_arrivals ORDER BY member")
        #expect(rows.rows == [[.text("b"), .integer(1), .integer(3)], [.text("b"), .integer(2), .integer(2)]])
        #expect(try replica.apply(.barrierArrive(name: "b", participants: 3, member: 3)) == .barrier(opened: true, generation: 0))
        state = try #require(try replica.table.barrier(name: "b"))
        #expect(state.arrived == 0 && state.arrivedMembers.isEmpty && state.generation == 1)
        // Opening cleared the members: they count again in the next generation.
        #expect(try replica.table.query("SELECT count(*) FROM barrier_arrivals").rows == [[.integer(0)]])
        #expect(try replica.apply(.barrierArrive(name: "b", participants: 3, member: 2)) == .barrier(opened: false, generation: 1))
        #expect(try replica.table.barrier(name: "b")?.arrivedMembers == [2])
    }

    @Test func arrivalsAreTrackedPerBarrierAndPerCompany() throws {
        let replica = try Replica()
        try replica.apply(.bootstrap(testSettings), company: 1)
        try replica.apply(.barrierArrive(name: "a", participants: 2, member: 1))
        // The same member at another barrier, and at the same name in another company, counts there.
        #expect(try replica.apply(.barrierArrive(name: "b", participants: 2, member: 1)) == .barrier(opened: false, generation: 0))
        #expect(try replica.apply(.barrierArrive(name: "a", participants: 2, member: 1), company: 1) == .barrier(opened: false, generation: 0))
        #expect(try replica.table.barrier(name: "a")?.arrived == 1)
        #expect(try replica.table.barrier(company: 1, name: "a")?.arrivedMembers == [1])
        // Members above 2^63 (stored as negative Int64) are listed in unsigned order.
        try replica.apply(.barrierArrive(name: "big", participants: 3, member: UInt64.max))
        try replica.apply(.barrierArrive(name: "big", participants: 3, member: 5))
        #expect(try replica.apply(.barrierArrive(name: "big", participants: 3, member: UInt64.max)) == .barrier(opened: false, generation: 0))
        #expect(try replica.table.barrier(name: "big")?.arrivedMembers == [5, UInt64.max])
    }

    // MARK: Arrivals that name their generation

    @Test func aReArrivalAtAnOpenedGenerationReportsItOpenAndDoesNotJoinTheNext() throws {
        let replica = try Replica()
        #expect(
            try replica.apply(.barrierArriveAt(name: "b", participants: 2, member: 1, generation: 0))
                == .barrier(opened: false, generation: 0))
        #expect(
            try replica.apply(.barrierArriveAt(name: "b", participants: 2, member: 2, generation: 0))
                == .barrier(opened: true, generation: 0))
        let opened = try #require(try replica.table.barrier(name: "b"))
        let before = try replica.table.canonicalDump()
        // Member 1 crashed after arriving and arrives again, still meaning generation 0.
        #expect(
            try replica.apply(.barrierArriveAt(name: "b", participants: 2, member: 1, generation: 0))
                == .barrier(opened: true, generation: 0))
        #expect(try replica.table.barrier(name: "b") == opened)
        #expect(try replica.table.canonicalDump().replacingProgress() == before.replacingProgress())
        // (Without a generation, the same arrival would have counted in generation 1.)
        #expect(try replica.apply(.barrierArrive(name: "b", participants: 2, member: 1)) == .barrier(opened: false, generation: 1))
        // A participant count that differs does not matter for a generation that is over.
        #expect(
            try replica.apply(.barrierArriveAt(name: "b", participants: 5, member: 2, generation: 0))
                == .barrier(opened: true, generation: 0))
        // The current generation is an ordinary arrival, with its dedup and its count check.
        #expect(
            try replica.apply(.barrierArriveAt(name: "b", participants: 2, member: 1, generation: 1))
                == .barrier(opened: false, generation: 1))
        #expect(
            try replica.apply(.barrierArriveAt(name: "b", participants: 3, member: 2, generation: 1)).rejection?.code
                == .participantsMismatch)
        #expect(
            try replica.apply(.barrierArriveAt(name: "b", participants: 2, member: 2, generation: 1))
                == .barrier(opened: true, generation: 1))
        #expect(try replica.table.barrier(name: "b")?.generation == 2)
    }

    @Test func anArrivalAtAGenerationNotBegunIsRejectedAndChangesNothing() throws {
        let replica = try Replica()
        let fresh = try replica.apply(.barrierArriveAt(name: "b", participants: 2, member: 1, generation: 1))
        #expect(fresh.rejection?.code == .invalidArgument)
        #expect(fresh.rejection?.message.contains("generation 0") == true)
        #expect(try replica.table.barrier(name: "b") == nil)
        try replica.apply(.barrierArriveAt(name: "b", participants: 1, member: 1, generation: 0))
        let before = try replica.table.canonicalDump()
        #expect(
            try replica.apply(.barrierArriveAt(name: "b", participants: 1, member: 1, generation: UInt64.max)).rejection?
                .code == .invalidArgument)
        #expect(try replica.table.canonicalDump().replacingProgress() == before.replacingProgress())
        #expect(
            try replica.apply(.barrierArriveAt(name: "b", participants: 0, member: 1, generation: 1)).rejection?.code
                == .participantsMismatch)
    }

    @Test func aRetriedArrivalWithASessionGetsTheStoredAnswer() throws {
        let replica = try Replica()
        let tag = ClientTag(session: 7, sequence: 1)
        let arrive = CommandBody.barrierArriveAt(name: "b", participants: 2, member: 1, generation: 0)
        #expect(try replica.apply(arrive, client: tag) == .barrier(opened: false, generation: 0))
        try replica.apply(.barrierArriveAt(name: "b", participants: 2, member: 2, generation: 0))
        // The session's stored result, not a fresh evaluation (which would say opened).
        #expect(try replica.apply(arrive, client: tag) == .barrier(opened: false, generation: 0))
        #expect(try replica.apply(arrive, client: ClientTag(session: 7, sequence: 2)) == .barrier(opened: true, generation: 0))
    }

    // MARK: Determinism and snapshots

    @Test func twoReplicasFedTheSameArrivalsAgreeAndASnapshotCarriesTheArrivals() throws {
        // A random mix of both arrivals over two barriers: repeats, stale and future generations,
        // counts that change.
        var rng = SplitMix64(seed: 0xBA44)
        let first = try Replica()
        let second = try Replica()
        var outcomes: Set<String> = []
        var restored: PageTable?
        for i in 0..<400 {
            let name = rng.next() % 2 == 0 ? "x" : "y"
            let participants = UInt32(rng.next() % 8 == 0 ? 2 : 3)
            let member = rng.next() % 4 + 1
            let body: CommandBody
            if rng.next() % 2 == 0 {
                body = .barrierArrive(name: name, participants: participants, member: member)
            } else {
                let current = try first.table.barrier(name: name)?.generation ?? 0
                let generation: UInt64
                switch rng.next() % 6 {
                case 0: generation = current > 0 ? current - 1 : 0
                case 1: generation = current + 1
                default: generation = current
                }
                body = .barrierArriveAt(name: name, participants: participants, member: member, generation: generation)
            }
            let a = try first.apply(body)
            let b = try second.apply(body)
            #expect(a == b)
            switch a {
            case .rejected(let rejection): outcomes.insert("\(rejection.code)")
            case .barrier(let opened, _): outcomes.insert(opened ? "opened" : "waiting")
            default: outcomes.insert("\(a)")
            }
            if i == 200 {
                #expect(try first.table.digest() == second.table.digest())
                restored = try PageTable(snapshot: try first.table.snapshot())
                #expect(try restored?.canonicalDump() == first.table.canonicalDump())
            } else if i > 200, let restored {
                #expect(try restored.apply(Command(body: body), index: first.nextIndex - 1) == a)
            }
        }
        #expect(try first.table.canonicalDump() == second.table.canonicalDump())
        #expect(try first.table.digest() == second.table.digest())
        #expect(try restored?.digest() == first.table.digest())
        #expect(try first.table.canonicalDump().contains("table barrier_arrivals (company, name, member, arrived_index)"))
        #expect(outcomes == ["invalidArgument", "participantsMismatch", "opened", "waiting"], "\(outcomes)")
    }

    @Test func aSchemaOneSnapshotRestoresAndIsMigrated() throws {
        // A page table as a build before schema 2 left it: no barrier_arrivals, user_version 1,
        // barrier "b" in the middle of generation 0 with one (unattributed) arrival.
        let old = try Replica()
        try old.apply(.barrierArrive(name: "b", participants: 3, member: 1))
        try old.table.database.exec("DROP TABLE barrier_arrivals; PRAGMA user_version = 1")
        let snapshot = Self.withSchemaVersion(1, try old.table.snapshot())

        let table = try PageTable(snapshot: snapshot)
        #expect(try table.query("PRAGMA user_version").rows == [[.integer(Int64(PageTable.schemaVersion))]])
        var state = try #require(try table.barrier(name: "b"))
        #expect(state.arrived == 1 && state.arrivedMembers.isEmpty && state.generation == 0)
        // It keeps applying; members from now on are tracked, and the barrier opens at the count.
        let next = (table.appliedIndex() ?? 0) + 1
        #expect(try table.apply(Command(body: .barrierArrive(name: "b", participants: 3, member: 2)), index: next) == .barrier(opened: false, generation: 0))
        #expect(try table.apply(Command(body: .barrierArrive(name: "b", participants: 3, member: 2)), index: next + 1) == .barrier(opened: false, generation: 0))
        state = try #require(try table.barrier(name: "b"))
        #expect(state.arrived == 2 && state.arrivedMembers == [2])
        #expect(
            try table.apply(Command(body: .barrierArriveAt(name: "b", participants: 3, member: 3, generation: 0)), index: next + 2)
                == .barrier(opened: true, generation: 0))
        // A migrated table snapshots as schema 2 and restores to the same state.
        let again = try PageTable(snapshot: try table.snapshot())
        #expect(try again.canonicalDump() == table.canonicalDump())
        #expect(try table.canonicalDump().hasPrefix("gallocy page table, schema \(PageTable.schemaVersion)\n"))
    }

    @Test func aSnapshotOfAnUnknownSchemaOrWithAMismatchedHeaderIsRefused() throws {
        let replica = try Replica()
        let snapshot = try replica.table.snapshot()
        for version: UInt32 in [0, UInt32(PageTable.schemaVersion) + 1, UInt32.max] {
            #expect(throws: StateMachineError.self) { try PageTable(snapshot: Self.withSchemaVersion(version, snapshot)) }
        }
        // A header that says 1 over a schema 2 image.
        do {
            _ = try PageTable(snapshot: Self.withSchemaVersion(1, snapshot))
            Issue.record("a schema 2 image behind a schema 1 header was restored")
        } catch {
            #expect(error.code == .badSnapshot)
        }
    }

    /// `snapshot` with its header's schema version replaced and its checksum redone.
    static func withSchemaVersion(_ version: UInt32, _ snapshot: [UInt8]) -> [UInt8] {
        var body = Array(snapshot.dropLast(4))
        // "GPTS", u32 format, u32 schema (little-endian).
        withUnsafeBytes(of: version.littleEndian) { body.replaceSubrange(8..<12, with: $0) }
        var writer = ByteWriter()
        writer.writeRaw(body)
        writer.appendChecksum()
        return writer.bytes
    }
}
