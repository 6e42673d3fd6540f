import Foundation
import Gallocy
import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage
import Testing

/// The log tool's logic in-process: replay, diff, the content check and the fixture generator.
@Suite struct LogToolLogicTests {
    typealias S = LogToolSupport

    @Test func replayingTheSameLogTwiceGivesIdenticalDigestsEqualToTheWritersState() throws {
        let dir = try S.temporaryDirectory() + "/data"
        defer { S.remove(dir) }
        let summary = try LogFixture.write(to: dir, options: .init(seed: 7, entries: 300))
        let directory = try LogDirectory(path: dir)
        let first = try LogReplay(directory).digest()
        let second = try LogReplay(directory).digest()
        #expect(first == second)
        #expect(first == summary.digestAtCommit)
        #expect(first.appliedIndex == summary.commitIndex)
    }

    @Test func replayFromASnapshotReachesTheSameStateAsReplayFromTheStart() throws {
        let base = try S.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let full = try LogFixture.write(to: base + "/full", options: .init(seed: 9, entries: 260))
        let snapped = try LogFixture.write(to: base + "/snap", options: .init(seed: 9, entries: 260, snapshotAt: 180))
        #expect(snapped.snapshotIndex == 180)
        let fromSnapshot = try LogReplay(try LogDirectory(path: base + "/snap"))
        #expect(fromSnapshot.startIndex == 180)
        #expect(try fromSnapshot.digest() == full.digestAtCommit)
        #expect(fromSnapshot.confStateKnown)
        #expect(fromSnapshot.confState.voters == [1, 2, 3, 4])
    }

    @Test func diffFindsTheFirstDifferingIndexOfGeneratedLogs() throws {
        let base = try S.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: base) }
        try LogFixture.write(to: base + "/a", options: .init(seed: 3, entries: 150))
        try LogFixture.write(to: base + "/b", options: .init(seed: 3, entries: 150, divergeAt: 50))
        try LogFixture.write(to: base + "/c", options: .init(seed: 3, entries: 150))
        let diff = try LogDiff(try LogDirectory(path: base + "/a"), try LogDirectory(path: base + "/b"))
        let index = try #require(diff.entryDifference?.index)
        #expect(index >= 50 && index < 60)
        #expect(diff.stateDifference?.index == index)
        let same = try LogDiff(try LogDirectory(path: base + "/a"), try LogDirectory(path: base + "/c"))
        #expect(same.identical)
        #expect(same.finalDigest != nil)
    }

    @Test func diffOfTheSameLogFromDifferentSnapshotsComparesStatesOnly() throws {
        let base = try S.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: base) }
        try LogFixture.write(to: base + "/a", options: .init(seed: 4, entries: 200))
        try LogFixture.write(to: base + "/b", options: .init(seed: 4, entries: 200, snapshotAt: 120))
        let diff = try LogDiff(try LogDirectory(path: base + "/a"), try LogDirectory(path: base + "/b"))
        #expect(diff.comparedEntries == 121...200)
        #expect(diff.identical, "\(diff.lines)")
        #expect(diff.stateStart == 120)
    }

    @Test func anUndecodableCommandIsShownAndReportedByTheContentCheck() throws {
        let dir = try S.temporaryDirectory() + "/data"
        defer { S.remove(dir) }
        try LogFixture.write(to: dir, options: .init(seed: 5, entries: 40, uncommitted: 0))
        do {
            // A committed entry whose data is not a command: storage's checksum is right.
            let storage = try RaftStorage(path: dir)
            try storage.persist(
                entries: [Entry(term: 2, index: 41, data: [1, 99, 0, 0, 0, 0, 0, 0])],
                hardState: HardState(term: 2, vote: 2, commit: 41))
        }
        let directory = try LogDirectory(path: dir)
        #expect(StorageVerifier.verify(directory.storage).isIntact)
        let check = try LogContentCheck(directory)
        #expect(check.problem?.hasPrefix("log entry 41") == true)
        var last: LogEntryDescription?
        try directory.forEachEntry(from: 41, through: 41) { (entry, size) throws(LogToolError) in
            last = LogEntryDescription(entry, storedSize: size, settings: directory.storage.settings)
        }
        #expect(last?.type == "undecodable")
        // Replay applies it as every member would: rejected, and the replay goes on.
        var result: ApplyResult?
        _ = try LogReplay(
            directory, to: 41,
            observe: { (entry, applied, _) throws(LogToolError) in
                if entry.index == 41 { result = applied.result }
            })
        #expect(result?.rejection?.code == .malformedCommand)
    }

    @Test func theGeneratorIsDeterministic() throws {
        let base = try S.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let a = try LogFixture.write(to: base + "/a", options: .init(seed: 11, entries: 120))
        let b = try LogFixture.write(to: base + "/b", options: .init(seed: 11, entries: 120))
        #expect(a.digestAtCommit == b.digestAtCommit)
        let x = try LogDirectory(path: base + "/a").storage.entries(from: 1, to: 121)
        let y = try LogDirectory(path: base + "/b").storage.entries(from: 1, to: 121)
        #expect(x == y)
    }

    @Test func generatedLogsHoldBothBarrierArrivalsAndReplayFromASnapshotInTheMiddleOfAGeneration() throws {
        let base = try S.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: base) }
        let full = try LogFixture.write(to: base + "/full", options: .init(seed: 21, entries: 400))
        var plain = 0
        var withGeneration = 0
        var openedBefore = 0
        try LogDirectory(path: base + "/full").forEachEntry(from: 1, through: full.lastIndex) {
            (entry, _) throws(LogToolError) in
            switch (try? CommandCodec.decode(entry.data))?.body {
            case .barrierArrive?: plain += 1
            case .barrierArriveAt?: withGeneration += 1
            default: break
            }
        }
        _ = try LogReplay(
            try LogDirectory(path: base + "/full"),
            observe: { (_, applied, _) throws(LogToolError) in
                if case .barrierArriveAt(_, _, _, let generation)? = applied.command?.body,
                    applied.result == .barrier(opened: true, generation: generation)
                {
                    openedBefore += 1
                }
            })
        #expect(plain > 0 && withGeneration > 0 && openedBefore > 0, "\(plain) \(withGeneration) \(openedBefore)")
        // A snapshot taken wherever it falls (arrivals tracked in it) replays to the same state.
        for snapshotAt: UInt64 in [150, 233, 301] {
            let dir = base + "/snap\(snapshotAt)"
            _ = try LogFixture.write(to: dir, options: .init(seed: 21, entries: 400, snapshotAt: snapshotAt))
            #expect(try LogReplay(try LogDirectory(path: dir)).digest() == full.digestAtCommit)
        }
    }

    @Test func theCommittedFixturesStillReplayToTheirRecordedDigests() throws {
        // Recorded when the fixtures were made (Fixtures/make-log-fixtures.sh prints them): a
        // change of the state machine that alters replayed state shows up here.
        // Page table digests re-recorded for schema 2 (the fixtures are unchanged): the dump
        // gained `barrier_arrivals`, and the fixtures' barrier "phase" has members arriving twice
        // in one generation, which now count once. Every other table replays as before (checked
        // row by row against the schema 1 build), and so do the heaps. log-v1-snapshot restores
        // a schema 1 snapshot (migrated on restore). Re-recorded again for schema 3 (page leases):
        // the dump's header says schema 3 and lists `page_leases` and the new `leases`, both
        // empty in these fixtures; the heaps are unchanged.
        let expected: [(String, String)] = [
            ("log-v1-small", "index 197 table 9e84fdc9 heap 658b1653"),
            ("log-v1-snapshot", "index 237 table 8d672b43 heap d4627c5b"),
            ("log-v1-diverged", "index 197 table 2eb2b186 heap 4fcfb497"),
        ]
        for (fixture, digest) in expected {
            let dir = try S.copyFixture(fixture)
            defer { S.remove(dir) }
            #expect(try LogReplay(try LogDirectory(path: dir)).digest().description == digest, "\(fixture)")
        }
    }

    @Test func entryDescriptionsDecodeEveryCommandKind() throws {
        let settings = LogFixture.settings
        let bodies: [(CommandBody, String)] = [
            (.bootstrap(settings), "bootstrap"), (.noop, "noop"), (.alloc(size: 64, member: 3), "alloc"),
            (.free(address: settings.heapBase), "free"),
            (
                .write(
                    member: 2, pages: [PageWrite(page: 3, diff: PageDiff(writing: [1, 2, 3], atOffset: 10))],
                    releaseLock: "q", releaseEpoch: 4), "write"
            ),
            (.atomic(address: settings.heapBase, op: .compareAndSwap(expect: 1, value: 2)), "atomic"),
            (.lockAcquire(name: "q", member: 1, ttlMillis: 10, now: 5), "lock_acquire"),
            (.lockRelease(name: "q", epoch: 1), "lock_release"), (.lockExpire(name: "q", epoch: 1), "lock_expire"),
            (.barrierArrive(name: "b", participants: 3, member: 1), "barrier"),
            (.barrierArriveAt(name: "b", participants: 3, member: 1, generation: 4), "barrier"),
            (.setRoot(name: "r", address: settings.heapBase), "set_root"),
            (.allocIn(size: 64, member: 1, mode: .sequential), "alloc"),
            (.leaseRequest(page: 3, member: 1, write: true, ttlMillis: 100, now: 5), "lease_request"),
            (
                .leaseRelease(page: 3, member: 1, grant: 9, diff: PageDiff(writing: [1, 2], atOffset: 4), now: 6),
                "lease_release"
            ),
            (.leaseExpire(page: 3, grant: 9, now: 7), "lease_expire"),
        ]
        for (body, type) in bodies {
            let entry = Entry(term: 1, index: 9, data: CommandCodec.encode(Command(body: body)))
            let description = LogEntryDescription(entry, storedSize: 50, settings: settings)
            #expect(description.type == type)
        }
        let write = LogEntryDescription(
            Entry(term: 1, index: 9, data: CommandCodec.encode(Command(body: bodies[4].0))), storedSize: 50,
            settings: settings)
        let barrier = LogEntryDescription(
            Entry(term: 1, index: 9, data: CommandCodec.encode(Command(body: .barrierArriveAt(name: "b", participants: 3, member: 1, generation: 4)))), storedSize: 20,
            settings: settings)
        #expect(barrier.fields["name"] == .string("b"))
        #expect(barrier.fields["participants"] == .uint(3))
        #expect(barrier.fields["member"] == .uint(1))
        #expect(barrier.fields["generation"] == .uint(4))
        #expect(barrier.summary == "'b' member 1 of 3 in generation 4")
        #expect(LogEntryDescription(
            Entry(term: 1, index: 9, data: CommandCodec.encode(Command(body: .barrierArrive(name: "b", participants: 3, member: 1)))), storedSize: 20,
            settings: settings).fields["generation"] == nil)
        let page = try #require(write.fields["pages"]?.arrayValue?.first)
        #expect(page["page"] == .uint(3))
        #expect(page["touched"] == .uint(3))
        #expect(page["address"] == .string("0x7f0000003000"))
        #expect(write.fields["release_lock"] == .string("q"))
        let change = LogEntryDescription(
            Entry(term: 1, index: 9, kind: .confChange, data: ConfChange(.remove, node: 3).encoded()), storedSize: 32,
            settings: nil)
        #expect(change.type == "conf_change")
        #expect(change.fields["change"] == .string("remove"))
        #expect(LogEntryDescription(Entry(term: 1, index: 9), storedSize: 23, settings: nil).type == "empty")
    }
}

/// Directories laid out as the engine lays them out (docs/engine.md): a bootstrap snapshot at
/// index 1, the log from 2, the new leader's empty entry, then the bootstrap command; membership
/// changes that carry the new member's address, recorded in the page table's members table.
@Suite struct LogToolEngineLayoutTests {
    typealias S = LogToolSupport

    private func write(_ dir: String, bootstrapSnapshot data: (StateMachine) throws -> [UInt8]) throws {
        let storage = try RaftStorage(path: dir)
        let confState = ConfState(voters: [1, 2, 3])
        let empty = try StateMachine()
        _ = try empty.apply(Entry(term: 1, index: 1))
        try storage.persist(hardState: HardState(term: 1, vote: 0, commit: 0), confState: confState)
        try storage.saveSnapshot(
            SnapshotMetadata(index: 1, term: 1, confState: confState), data: try data(empty), replacingLog: true)
        let settings = LogFixture.settings
        let entries = [
            Entry(term: 2, index: 2),
            Entry(term: 2, index: 3, data: CommandCodec.encode(Command(body: .bootstrap(settings)))),
            Entry(term: 2, index: 4, data: CommandCodec.encode(Command(body: .alloc(size: 64, member: 2)))),
            Entry(
                term: 2, index: 5, kind: .confChange,
                data: ConfChange(.addLearner, node: 4).encoded() + Array("10.0.0.4:7000".utf8)),
        ]
        try storage.persist(entries: entries, hardState: HardState(term: 2, vote: 1, commit: 5))
    }

    @Test func replayStartsFromTheBootstrapSnapshotAndRecordsMembersAsTheEngineDoes() throws {
        let dir = try S.temporaryDirectory() + "/data"
        defer { S.remove(dir) }
        try write(dir) { try $0.snapshot() }
        let directory = try LogDirectory(path: dir)
        let replay = try LogReplay(directory)
        #expect(replay.startIndex == 1)
        #expect(replay.index == 5)
        #expect(replay.confState.learners == [4])
        let members = try replay.machine.pageTable.members()
        #expect(members == [Member(id: 4, role: "learner", address: "10.0.0.4:7000")])
        // What a member that applied the same entries holds.
        let member = try StateMachine()
        for entry in try directory.storage.entries(from: 2, to: 6) {
            _ = try member.apply(entry)
            try MembershipRecord.apply(entry, to: member)
        }
        #expect(try member.canonicalDigest() == replay.digest())
        #expect(try LogContentCheck(directory).problem == nil)
        var change: LogEntryDescription?
        try directory.forEachEntry(from: 5, through: 5) { (entry, size) throws(LogToolError) in
            change = LogEntryDescription(entry, storedSize: size, settings: directory.storage.settings)
        }
        #expect(change?.fields["address"] == .string("10.0.0.4:7000"))
    }

    @Test func aBootstrapSnapshotWithEmptyDataMeansAnEmptyStateMachine() throws {
        let dir = try S.temporaryDirectory() + "/data"
        defer { S.remove(dir) }
        try write(dir) { _ in [] }
        let directory = try LogDirectory(path: dir)
        let replay = try LogReplay(directory)
        #expect(replay.index == 5)
        #expect(try replay.machine.pageTable.allocations().count == 1)
        #expect(try LogContentCheck(directory).problem == nil)
    }
}
