import GallocyCodec
import GallocyRaft
import Testing

@testable import GallocyStateMachine

/// Makes a random but reproducible log: allocations, frees, writes (raw, diffed against the
/// current page, invalid, outside allocations), atomics, locks, barriers, roots, retries of
/// earlier requests, empty and membership entries, and garbage. It looks at the state of the
/// member that applies the entries first, so that most writes and atomics land in live blocks.
struct LogGenerator {
    var random: SplitMix64
    let settings: ClusterSettings
    private(set) var blocks: [(address: UInt64, size: UInt64)] = []
    /// Blocks freed lately: a write into one models a write whose proposer checked the block
    /// before a racing free of it committed.
    private var freedBlocks: [(address: UInt64, size: UInt64)] = []
    private var nextSequence: [UInt64] = [0, 0, 0, 0, 0]
    private var tagged: [[UInt8]] = []
    private let lockNames = ["a", "b", "c"]

    /// Whether to make writes a careful proposer would not send: into a block freed since (a
    /// write racing a free) or to a random page. The page table checks writes per page, so
    /// these can put bytes into free memory of a page that another block keeps allocated.
    let racingWrites: Bool

    init(seed: UInt64, settings: ClusterSettings = testSettings, racingWrites: Bool = true) {
        random = SplitMix64(seed: seed)
        self.settings = settings
        self.racingWrites = racingWrites
    }

    private mutating func chance(_ percent: UInt64) -> Bool { random.next() % 100 < percent }
    private mutating func pick(_ range: ClosedRange<UInt64>) -> UInt64 { UInt64.random(in: range, using: &random) }
    private mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
    }

    /// The data of the next entry (empty: an empty entry), its kind, and whether it repeats an
    /// earlier request (whose result is then the remembered one, not news about the state).
    mutating func next(state machine: StateMachine) throws -> (data: [UInt8], kind: Entry.Kind, isRetry: Bool) {
        let roll = random.next() % 100
        if roll < 2 { return ([], .normal, false) }
        if roll < 4 { return (bytes(Int(pick(0...12))), .confChange, false) }
        if roll < 8 {
            // Garbage: random bytes, or a real command with one byte changed.
            if chance(50) { return (bytes(Int(pick(1...40))), .normal, false) }
            var data = Command(body: .alloc(size: pick(1...100), member: 1)).encode()
            data[Int(pick(0...UInt64(data.count - 1)))] ^= UInt8(pick(1...255))
            return (data, .normal, false)
        }
        if roll < 13, !tagged.isEmpty {
            // A retry of a recent request (same session and sequence).
            return (tagged[Int(pick(UInt64(max(0, tagged.count - 8))...UInt64(tagged.count - 1)))], .normal, true)
        }
        let body = try nextBody(roll: roll, state: machine)
        var client = ClientTag.none
        if chance(40) {
            let session = Int(pick(1...4))
            nextSequence[session] += 1
            client = ClientTag(session: UInt64(session), sequence: nextSequence[session])
        }
        let data = Command(client: client, body: body).encode()
        if client.session != 0 { tagged.append(data) }
        return (data, .normal, false)
    }

    private mutating func nextBody(roll: UInt64, state machine: StateMachine) throws -> CommandBody {
        let pageSize = UInt64(settings.pageSize)
        switch roll {
        case ..<25:
            return .alloc(size: chance(80) ? pick(1...300) : pick(pageSize...5 * pageSize), member: pick(1...3))
        case ..<33:
            guard !blocks.isEmpty, chance(90) else { return .free(address: settings.heapBase + pick(0...4096) * 8) }
            return .free(address: blocks[Int(pick(0...UInt64(blocks.count - 1)))].address)
        case ..<60:
            let stale = racingWrites && chance(4) && !freedBlocks.isEmpty
            guard let block = stale ? freedBlocks[Int(pick(0...UInt64(freedBlocks.count - 1)))] : randomBlock() else {
                return .noop
            }
            let length = pick(1...min(block.size, 3 * pageSize))
            let offset = pick(0...(block.size - length))
            var pages = pageWrites(bytes(Int(length)), at: block.address + offset, settings: settings)
            if chance(5) {
                // An invalid diff somewhere in the write.
                let victim = Int(pick(0...UInt64(pages.count - 1)))
                pages[victim].diff =
                    chance(50)
                    ? PageDiff(compressed: bytes(5), rawLength: UInt32(pick(1...50)))
                    : PageDiff(writing: [1, 2], atOffset: Int(pageSize) - 1)
            }
            if racingWrites, chance(5) {
                // A page that is probably not allocated.
                pages.append(PageWrite(page: pick(0...settings.pageCount), diff: PageDiff(writing: [7], atOffset: 0)))
            }
            let release = chance(10) ? lockNames[Int(pick(0...2))] : nil
            return .write(member: pick(1...3), pages: pages, releaseLock: release, releaseEpoch: pick(0...4))
        case ..<70:
            // A diff against the page as this member holds it now, as the runtime makes them.
            guard let block = randomBlock(), let heap = machine.heap else { return .noop }
            let offset = pick(0...(block.size - 1))
            let address = block.address + offset
            let page = (address - settings.heapBase) / pageSize
            let pageStart = settings.heapBase + page * pageSize
            let twin = try heap.read(address: pageStart, length: Int(pageSize))
            var contents = twin
            let blockEnd = min(block.address + block.size, pageStart + pageSize)
            for _ in 0..<pick(1...20) {
                let target = pick(address...(blockEnd - 1))
                contents[Int(target - pageStart)] = UInt8.random(in: 0...255, using: &random)
            }
            let diff = twin.withUnsafeBytes { t in contents.withUnsafeBytes { p in PageDiff.make(twin: t, page: p) } }
            return .write(
                member: pick(1...3), pages: [PageWrite(page: page, diff: diff)], releaseLock: nil, releaseEpoch: 0)
        case ..<84:
            guard let block = randomBlock(), block.size >= 8 else { return .noop }
            var address = block.address + pick(0...(block.size - 8)) / 8 * 8
            if chance(5) { address += pick(1...7) }
            if chance(3) { address = settings.heapBase + pick(0...settings.heapSize) }
            let op: AtomicOp
            switch random.next() % 3 {
            case 0:
                // Expect the current value half of the time, so that both outcomes occur.
                let current = (try? heap(machine).word(at: address)) ?? 0
                op = .compareAndSwap(expect: chance(50) ? current : pick(0...3), value: random.next())
            case 1: op = .add(chance(20) ? UInt64.max - pick(0...10) : pick(0...1000))
            default: op = .swap(random.next())
            }
            return .atomic(address: address, op: op)
        case ..<92:
            let name = lockNames[Int(pick(0...2))]
            switch random.next() % 3 {
            case 0: return .lockAcquire(name: name, member: pick(1...3), ttlMillis: pick(0...100), now: pick(0...1000))
            case 1: return .lockRelease(name: name, epoch: pick(0...5))
            default: return .lockExpire(name: name, epoch: pick(0...5))
            }
        case ..<97:
            return .barrierArrive(name: chance(50) ? "x" : "y", participants: UInt32(pick(2...3)), member: pick(1...3))
        default:
            return .setRoot(name: "root\(pick(0...2))", address: chance(20) ? 0 : settings.heapBase + pick(0...100) * 8)
        }
    }

    private func heap(_ machine: StateMachine) throws -> HeapImage {
        guard let heap = machine.heap else { throw TestFailure("no heap") }
        return heap
    }

    private mutating func randomBlock() -> (address: UInt64, size: UInt64)? {
        guard !blocks.isEmpty else { return nil }
        return blocks[Int(pick(0...UInt64(blocks.count - 1)))]
    }

    /// Follows the allocations and frees that were applied (not retries: their result is the
    /// remembered one).
    mutating func observe(_ applied: StateMachine.AppliedEntry) {
        switch (applied.command?.body, applied.result) {
        case (.alloc(let size, _)?, .allocated(let address)):
            blocks.append((address, size))
            freedBlocks.removeAll { $0.address < address + size && address < $0.address + $0.size }
        case (.free(let address)?, .freed):
            freedBlocks += blocks.filter { $0.address == address }
            if freedBlocks.count > 6 { freedBlocks.removeFirst() }
            blocks.removeAll { $0.address == address }
        default:
            break
        }
    }
}

@Suite struct StateMachineReplayTests {
    /// Everything two members must agree on, compared field by field.
    func expectSameState(_ a: StateMachine, _ b: StateMachine, _ context: String) throws {
        #expect(a.appliedIndex == b.appliedIndex, "\(context)")
        #expect(try a.canonicalDigest() == b.canonicalDigest(), "\(context)")
        #expect(try a.pageTable.canonicalDump() == b.pageTable.canonicalDump(), "\(context)")
        guard let heapA = a.heap, let heapB = b.heap else {
            #expect(a.heap == nil && b.heap == nil, "\(context)")
            return
        }
        #expect(heapA.nonZeroPages() == heapB.nonZeroPages(), "\(context)")
        for block in try a.pageTable.allocations() {
            #expect(
                try heapA.read(address: block.address, length: Int(block.size))
                    == heapB.read(address: block.address, length: Int(block.size)),
                "\(context): block at \(block.address)")
        }
        let size = Int(heapA.size)
        #expect(
            try heapA.read(address: heapA.settings.heapBase, length: size)
                == heapB.read(address: heapB.settings.heapBase, length: size), "\(context)")
    }

    /// Free memory must read as zero: every free range of the page table is zero in the heap.
    func expectFreeMemoryIsZero(_ machine: StateMachine, _ context: String) throws {
        guard let heap = machine.heap else { return }
        for range in try machine.pageTable.freeRanges() {
            let bytes = try heap.read(address: range.address, length: Int(range.size))
            #expect(
                bytes.allSatisfy { $0 == 0 },
                "\(context): free range at 0x\(String(range.address, radix: 16)) holds data")
        }
    }

    @Test(arguments: [1, 2, 3, 132, 0xDEAD_BEEF] as [UInt64])
    func membersThatApplyTheSameLogEndIdentical(seed: UInt64) throws {
        let entryCount = 500
        let leader = try StateMachine()
        let follower = try StateMachine()
        var generator = LogGenerator(seed: seed)
        var entries: [Entry] = []
        var results: [StateMachine.AppliedEntry] = []
        var snapshot: [UInt8] = []
        var digestAtSnapshot: StateMachineDigest?
        var index: UInt64 = 1

        let bootstrap = Entry(term: 1, index: index, data: Command(body: .bootstrap(testSettings)).encode())
        entries.append(bootstrap)
        results.append(try leader.apply(bootstrap))
        for i in 0..<entryCount {
            index += UInt64.random(in: 1...2, using: &generator.random)  // gaps are allowed
            let (data, kind, isRetry) = try generator.next(state: leader)
            let entry = Entry(term: 1 + UInt64(i / 100), index: index, kind: kind, data: data)
            let applied = try leader.apply(entry)
            if !isRetry {
                generator.observe(applied)
                if case .allocated(let address) = applied.result, case .alloc(let size, _)? = applied.command?.body {
                    let contents = try leader.read(address: address, length: Int(size))
                    #expect(contents.allSatisfy { $0 == 0 }, "seed \(seed): new block at \(address) is not zero")
                }
            }
            entries.append(entry)
            results.append(applied)
            if i == entryCount / 2 {
                snapshot = try leader.snapshot()
                digestAtSnapshot = try leader.canonicalDigest()
            }
        }
        let kinds = Set(results.compactMap { $0.command?.kindName })
        #expect(
            kinds.isSuperset(of: ["alloc", "free", "write", "atomic", "lock_acquire", "barrier"]),
            "seed \(seed): \(kinds)")
        #expect(results.contains { $0.result.rejection?.code == .malformedCommand }, "seed \(seed)")
        #expect(results.contains { if case .atomic = $0.result { true } else { false } }, "seed \(seed)")
        #expect(results.contains { if case .written = $0.result { true } else { false } }, "seed \(seed)")
        #expect(results.contains { if case .freed = $0.result { true } else { false } }, "seed \(seed)")
        #expect(results.contains { if case .atomic(false, _) = $0.result { true } else { false } }, "seed \(seed)")
        #expect(results.contains { $0.result.rejection?.code == .outsideAllocation }, "seed \(seed)")
        #expect(leader.heap.map { !$0.nonZeroPages().isEmpty } ?? false, "seed \(seed)")

        for (entry, expected) in zip(entries, results) {
            let applied = try follower.apply(entry)
            #expect(applied == expected, "seed \(seed): entry \(entry.index)")
        }
        try expectSameState(leader, follower, "seed \(seed)")

        // A member that starts from the snapshot taken midway and applies the rest.
        let late = try StateMachine(snapshot: snapshot)
        #expect(try late.canonicalDigest() == digestAtSnapshot, "seed \(seed)")
        for (entry, expected) in zip(entries, results) where entry.index > late.appliedIndex {
            let applied = try late.apply(entry)
            #expect(applied == expected, "seed \(seed): entry \(entry.index) after the snapshot")
        }
        try expectSameState(leader, late, "seed \(seed), restored")
    }

    /// The engine applies the entries of one Raft Ready in one page-table batch (one SQLite
    /// transaction, a savepoint per entry, session and progress rows written at its end). Batches
    /// of random sizes must change nothing: the same results entry by entry (rejections and
    /// retried requests inside a batch included), and the same digest, even read in the middle
    /// of a batch.
    @Test(arguments: [11, 12, 13] as [UInt64])
    func batchesOfEntriesGiveTheSameResultsAndState(seed: UInt64) throws {
        let single = try StateMachine()
        let batched = try StateMachine()
        var generator = LogGenerator(seed: seed)
        var random = SplitMix64(seed: seed ^ 0xBA7C)
        let bootstrap = Entry(term: 1, index: 1, data: Command(body: .bootstrap(testSettings)).encode())
        #expect(try single.apply(bootstrap) == batched.apply(bootstrap))
        var index: UInt64 = 1
        var batches = 0
        var retriesInBatches = 0
        var rejectionsInBatches = 0
        while index < 800 {
            let size = Int(random.next() % 40) + 1
            try batched.beginBatch()
            batches += 1
            for position in 0..<size {
                index += 1
                let (data, kind, isRetry) = try generator.next(state: single)
                let entry = Entry(term: 1, index: index, kind: kind, data: data)
                let expected = try single.apply(entry)
                let applied = try batched.apply(entry)
                #expect(applied == expected, "seed \(seed): entry \(index), \(position) of a batch of \(size)")
                if !isRetry { generator.observe(expected) }
                if position > 0, isRetry { retriesInBatches += 1 }
                if position > 0, expected.result.rejection != nil { rejectionsInBatches += 1 }
                if random.next() % 50 == 0 {
                    #expect(try batched.canonicalDigest() == single.canonicalDigest(), "seed \(seed): inside a batch at \(index)")
                }
            }
            try batched.endBatch()
        }
        #expect(batches > 20 && retriesInBatches > 5 && rejectionsInBatches > 5, "seed \(seed)")
        try expectSameState(single, batched, "seed \(seed), batched")
        // The batched member's snapshot restores to the same state too.
        let restored = try StateMachine(snapshot: try batched.snapshot())
        try expectSameState(single, restored, "seed \(seed), restored from the batched member")
    }

    @Test(arguments: [7, 8] as [UInt64])
    func freeMemoryStaysZeroWhenWritesStayInsideTheirBlocks(seed: UInt64) throws {
        let machine = try StateMachine()
        var generator = LogGenerator(seed: seed, racingWrites: false)
        _ = try machine.apply(Entry(term: 1, index: 1, data: Command(body: .bootstrap(testSettings)).encode()))
        for index in 2...UInt64(400) {
            let (data, kind, isRetry) = try generator.next(state: machine)
            let applied = try machine.apply(Entry(term: 1, index: index, kind: kind, data: data))
            if !isRetry { generator.observe(applied) }
            if index % 100 == 0 { try expectFreeMemoryIsZero(machine, "seed \(seed), index \(index)") }
        }
    }
}
