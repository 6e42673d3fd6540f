import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Writes a realistic data directory through `RaftStorage`, the way a member would: a bootstrap
/// entry, a new leader's empty entries, allocations, writes whose page diffs are made from a twin
/// (`PageDiff.make`), atomics, locks (acquire, release, a releasing write, an expiry), barrier
/// arrivals (with and without a generation), named roots, frees, membership changes, a second
/// term; optionally a snapshot of the state machine and the compaction of the log under it. A
/// state machine applies every entry as it is generated, so that writes land in blocks that are
/// really allocated and lock epochs are real.
///
/// Deterministic: the same options give the same entries (`SplitMix64` of GallocyRaft). For the fixtures in
/// `Fixtures/` (`gallocy log make-fixture`) and the tests.
package enum LogFixture {
    package struct Options: Sendable {
        package var seed: UInt64
        /// How many entries to write.
        package var entries: Int
        /// Take a snapshot at this index and compact the log through it.
        package var snapshotAt: UInt64?
        /// From this index on, draw the entries from another random stream: a directory made with
        /// the same seed and `divergeAt` agrees with the plain one before that index only.
        package var divergeAt: UInt64?
        /// How many of the last entries stay uncommitted.
        package var uncommitted: Int
        /// The initial LMDB map size (small, so the fixture files stay small).
        package var mapSize: Int

        package init(
            seed: UInt64 = 1, entries: Int = 200, snapshotAt: UInt64? = nil, divergeAt: UInt64? = nil,
            uncommitted: Int = 3, mapSize: Int = 1 << 20
        ) {
            self.seed = seed
            self.entries = entries
            self.snapshotAt = snapshotAt
            self.divergeAt = divergeAt
            self.uncommitted = uncommitted
            self.mapSize = mapSize
        }
    }

    /// What was written.
    package struct Summary: Sendable {
        package var lastIndex: UInt64
        package var commitIndex: UInt64
        package var snapshotIndex: UInt64
        package var settings: ClusterSettings
        /// The state machine's digest at the commit index, computed while generating.
        package var digestAtCommit: StateMachineDigest
    }

    package static let settings = ClusterSettings(
        clusterID: 0x6a11_0c, heapBase: 0x7f00_0000_0000, heapSize: 1 << 20, pageSize: 4096)

    /// A live block, as the generator knows it.
    private struct Block {
        var address: UInt64
        var size: UInt64
        var member: UInt64
    }

    /// Writes a new data directory at `path` (which must not hold one already).
    @discardableResult
    package static func write(to path: String, options: Options) throws(LogToolError) -> Summary {
        do {
            return try generate(path, options)
        } catch let error as LogToolError {
            throw error
        } catch let error as StorageError {
            throw LogToolError(.badArgument, "writing the fixture \(path): \(error.message)")
        } catch let error as StateMachineError {
            throw LogToolError(error, while: "generating the fixture \(path)")
        } catch {
            throw LogToolError(.badArgument, "writing the fixture \(path): \(error)")
        }
    }

    private static func generate(_ path: String, _ options: Options) throws -> Summary {
        let storage = try RaftStorage(path: path, options: .init(mapSize: options.mapSize, snapshotChunkSize: 64 << 10))
        guard storage.lastIndex == 0 else {
            throw LogToolError(.badArgument, "\(path) already holds a log; give make-fixture a new directory")
        }
        let machine = try StateMachine()
        var rng = SplitMix64(seed: options.seed)
        var term: UInt64 = 1
        var vote: UInt64 = 1
        var confState = ConfState(voters: [1, 2, 3])
        var members: [UInt64] = [1, 2, 3]
        var blocks: [Block] = []
        var heldLocks: [String: (member: UInt64, epoch: UInt64)] = [:]
        var sequences: [UInt64: UInt64] = [:]
        var clock: UInt64 = 1_700_000_000_000
        var entries: [Entry] = []
        var snapshot: (data: [UInt8], term: UInt64, confState: ConfState)?
        let total = UInt64(max(options.entries, 8))
        let commit = total - UInt64(min(options.uncommitted, Int(total) - 1))
        var digestAtCommit = try machine.canonicalDigest()
        let lockNames = ["queue", "table/accounts", "stats"]

        try storage.persist(hardState: HardState(term: 1, vote: 1, commit: 0), settings: settings, confState: confState)

        func next(_ body: CommandBody, session: UInt64 = 0) -> Entry {
            var client = ClientTag.none
            if session != 0 {
                let sequence = (sequences[session] ?? 0) + 1
                sequences[session] = sequence
                client = ClientTag(session: session, sequence: sequence)
            }
            let data = CommandCodec.encode(Command(client: client, body: body))
            return Entry(term: term, index: UInt64(entries.count + 1), data: data)
        }

        while UInt64(entries.count) < total {
            let index = UInt64(entries.count + 1)
            if let divergeAt = options.divergeAt, index == divergeAt {
                rng = SplitMix64(seed: options.seed ^ 0xD1FF_D1FF_D1FF_D1FF)
            }
            let member = members[Int(rng.below(UInt64(members.count)))]
            clock += 1 + rng.below(40)
            var entry: Entry
            switch index {
            case 1:
                entry = next(.bootstrap(settings))
            case 2:
                entry = Entry(term: term, index: index)  // the first leader's empty entry
            case total * 2 / 5:
                entry = Entry(
                    term: term, index: index, kind: .confChange,
                    data: ConfChange(.addLearner, node: 4).encoded() + Array("127.0.0.1:7004".utf8))
            case total * 2 / 5 + 4:
                entry = Entry(
                    term: term, index: index, kind: .confChange,
                    data: ConfChange(.addVoter, node: 4).encoded() + Array("127.0.0.1:7004".utf8))
            case total * 3 / 5:
                term = 2  // member 2 won an election; its first entry is empty
                vote = 2
                entry = Entry(term: term, index: index)
            default:
                let roll = rng.below(100)
                if blocks.count < 3 || roll < 14 {
                    let size = rng.below(4) == 0 ? 4096 + rng.below(9000) : 8 + rng.below(900)
                    entry = next(.alloc(size: size, member: member), session: member * 1000 + 1)
                } else if roll < 52 {
                    entry = try makeWrite(machine, blocks, member: member, rng: &rng, next: next)
                } else if roll < 64 {
                    let block = blocks[0]
                    let op: AtomicOp
                    switch rng.below(3) {
                    case 0: op = .add(1 + rng.below(5))
                    case 1:
                        op = .compareAndSwap(
                            expect: try machine.heap?.word(at: block.address) ?? 0, value: rng.below(1000))
                    default: op = .swap(rng.below(1000))
                    }
                    entry = next(.atomic(address: block.address, op: op), session: member * 1000 + 2)
                } else if roll < 78 {
                    let name = lockNames[Int(rng.below(UInt64(lockNames.count)))]
                    if let held = heldLocks[name] {
                        switch rng.below(3) {
                        case 0:
                            entry = next(.lockRelease(name: name, epoch: held.epoch))
                        case 1:
                            entry = next(.lockExpire(name: name, epoch: held.epoch))
                        default:
                            // A write that publishes under the lock and releases it in the same entry.
                            let write = try makeWrite(machine, blocks, member: held.member, rng: &rng, next: next)
                            guard case .normal = write.kind, let command = try? CommandCodec.decode(write.data),
                                case .write(let m, let pages, _, _) = command.body
                            else {
                                entry = next(.lockRelease(name: name, epoch: held.epoch))
                                break
                            }
                            entry = next(.write(member: m, pages: pages, releaseLock: name, releaseEpoch: held.epoch))
                        }
                    } else {
                        entry = next(
                            .lockAcquire(name: name, member: member, ttlMillis: 5000 + rng.below(5000), now: clock),
                            session: member * 1000 + 3)
                    }
                } else if roll < 84 {
                    // Every other arrival names its generation, as a runtime does; one in three of
                    // those names the generation before (a member arriving again after a restart,
                    // when the barrier opened meanwhile). Chosen by index, not drawn, so that the
                    // random stream is the one the committed fixtures were made with.
                    if index % 2 == 0 {
                        let current = try machine.pageTable.barrier(name: "phase")?.generation ?? 0
                        let generation = index % 3 == 0 && current > 0 ? current - 1 : current
                        entry = next(
                            .barrierArriveAt(name: "phase", participants: 3, member: member, generation: generation))
                    } else {
                        entry = next(.barrierArrive(name: "phase", participants: 3, member: member))
                    }
                } else if roll < 88 {
                    let block = blocks[Int(rng.below(UInt64(blocks.count)))]
                    entry = next(.setRoot(name: rng.below(2) == 0 ? "counter" : "results", address: block.address))
                } else if roll < 96, blocks.count > 4 {
                    let victim = 1 + Int(rng.below(UInt64(blocks.count - 1)))  // block 0 holds the counter
                    entry = next(.free(address: blocks[victim].address), session: member * 1000 + 1)
                } else {
                    entry = next(.noop)
                }
            }
            entry.index = index
            entry.term = term
            entries.append(entry)
            let applied = try machine.apply(entry)
            switch (applied.command?.body, applied.result) {
            case (.alloc(let size, let owner)?, .allocated(let address)):
                blocks.append(Block(address: address, size: size, member: owner))
            case (.free(let address)?, .freed):
                blocks.removeAll { $0.address == address }
            case (.lockAcquire(let name, let owner, _, _)?, .lockGranted(let epoch, _)):
                heldLocks[name] = (owner, epoch)
            case (.lockRelease(let name, _)?, .lockReleased), (.lockExpire(let name, _)?, .lockExpired):
                heldLocks[name] = nil
            case (.write(_, _, let name?, _)?, .written(_, true)):
                heldLocks[name] = nil
            default:
                break
            }
            // A membership change carries the new member's address after its nine bytes, as the
            // engine writes it; members record it in the page table.
            try MembershipRecord.apply(entry, to: machine)
            if entry.kind == .confChange, let (change, _) = MembershipRecord.decode(entry.data),
                let changed = confState.applying(change)
            {
                confState = changed
                members = changed.voters
            }
            if index == options.snapshotAt {
                snapshot = (try machine.snapshot(), term, confState)
            }
            if index == commit { digestAtCommit = try machine.canonicalDigest() }
            // A member persists what it receives in small batches, each with its hard state.
            if entries.count % 16 == 0 || UInt64(entries.count) == total {
                let batchStart = (entries.count - 1) / 16 * 16
                let last = UInt64(entries.count)
                try storage.persist(
                    entries: Array(entries[batchStart...]),
                    hardState: HardState(term: term, vote: vote, commit: min(commit, last)),
                    confState: confState)
            }
        }
        var snapshotIndex: UInt64 = 0
        if let snapshotAt = options.snapshotAt, let snapshot, snapshotAt <= commit {
            try storage.saveSnapshot(
                SnapshotMetadata(index: snapshotAt, term: snapshot.term, confState: snapshot.confState),
                data: snapshot.data)
            try storage.compact(through: snapshotAt)
            snapshotIndex = snapshotAt
        }
        return Summary(
            lastIndex: storage.lastIndex, commitIndex: storage.hardState.commit, snapshotIndex: snapshotIndex,
            settings: settings, digestAtCommit: digestAtCommit)
    }

    /// A write by `member` into one live block: the diff of each page it changes, made from the
    /// page's current bytes (the twin) and the new ones, as the runtime makes them.
    private static func makeWrite(
        _ machine: StateMachine, _ blocks: [Block], member: UInt64, rng: inout SplitMix64,
        next: (CommandBody, UInt64) -> Entry
    ) throws -> Entry {
        let block = blocks[Int(rng.below(UInt64(blocks.count)))]
        let pageSize = UInt64(settings.pageSize)
        let length = min(block.size, 1 + rng.below(rng.below(4) == 0 ? 6000 : 200))
        let offset = rng.below(block.size - length + 1)
        let start = block.address + offset
        let end = start + length
        var writes: [PageWrite] = []
        var page = (start - settings.heapBase) / pageSize
        while settings.heapBase + page * pageSize < end {
            let pageAddress = settings.heapBase + page * pageSize
            let twin = try machine.read(address: pageAddress, length: Int(pageSize))
            var bytes = twin
            let from = max(start, pageAddress) - pageAddress
            let to = min(end, pageAddress + pageSize) - pageAddress
            // Application data is structured (counters, text, small records), so it compresses.
            let fill = UInt8(truncatingIfNeeded: rng.below(256))
            let stride = 1 + Int(rng.below(8))
            for k in Int(from)..<Int(to) where k % stride == 0 {
                bytes[k] = fill &+ UInt8(truncatingIfNeeded: k / stride % 4)
            }
            let diff = twin.withUnsafeBytes { old in
                bytes.withUnsafeBytes { new in PageDiff.make(twin: old, page: new) }
            }
            if !diff.isEmpty { writes.append(PageWrite(page: page, diff: diff)) }
            page += 1
        }
        if writes.isEmpty {
            writes.append(
                PageWrite(
                    page: (start - settings.heapBase) / pageSize,
                    diff: PageDiff(writing: [0xA5], atOffset: Int((start - settings.heapBase) % pageSize))))
        }
        return next(.write(member: member, pages: writes, releaseLock: nil, releaseEpoch: 0), 0)
    }

    /// Flips one byte in the middle of the stored log entry at `index`, through the raw LMDB API
    /// (under the entry's checksum, which `verify` must then find wrong). For the corrupted fixture.
    package static func corrupt(path: String, index: UInt64) throws(LogToolError) {
        do {
            let environment = try LMDBEnvironment(path: path, configuration: .init(mapSize: 1 << 20, maxDatabases: 4))
            let log = try environment.openDatabase("log", create: false)
            let key: [UInt8] = (0..<8).map { UInt8(truncatingIfNeeded: index >> (56 - 8 * UInt64($0))) }
            try environment.write { txn in
                guard let raw = try txn.get(key, in: log) else {
                    throw LogToolError(.outOfRange, "\(path) has no log entry \(index) to corrupt")
                }
                var bytes = Array(raw)
                bytes[bytes.count / 2] ^= 0x5A
                try txn.put(bytes, forKey: key, in: log)
            }
        } catch let error as LogToolError {
            throw error
        } catch {
            throw LogToolError(.badArgument, "corrupting entry \(index) of \(path): \(error)")
        }
    }

    /// Removes the lock files a data directory gets when it is opened, so that a fixture holds
    /// only `data.mdb`.
    package static func removeLockFiles(path: String) {
        unlink(path + "/LOCK")
        unlink(path + "/lock.mdb")
    }
}
