import GallocyRaft
import Foundation
import Logging
import Synchronization

/// `gallocy internal alloc-stress`: the layered allocator under load on every member at once,
/// with a check at the end (tests run three of these processes, and kill one in the middle).
///
/// Each round has two phases, each closed by a commit and a barrier (its own, on committed atomics:
/// an arrival is a bit per member in a word per phase and round, so that a restarted process that
/// arrives again is counted once; `Member.barrier(_:participants:generation:)` does not use its
/// generation yet, see docs/allocator.md):
///
/// - **A**: the member takes back the blocks the others freed into its arenas; then `threads` OS threads each run `operations` steps on their own table of 256 entries:
///   an empty entry gets a new block of a random size (mostly 16 B to 1 KiB, some up to 8 KiB,
///   1% above 8 KiB), stamped with (member, thread, serial) in its first and last words and a
///   fill byte in between; a full one has its stamp checked and its block freed. Large frees are
///   kept for after the threads joined (a free of a large block is a release, and a release must
///   not cut through another thread's allocation and its record).
/// - **B**: each member frees the blocks in the first `handoff` entries of the next member's
///   thread-0 table (blocks of another member's arenas: remote frees) and empties those entries.
///
/// Progress (the last round whose phase A / B ended) lives in the heap, published with the
/// phase; a restarted process continues from it. Phase B is repeated after a crash: a remote free
/// that finds its block freed already counts as done.
///
/// At the end every member checks, from the heap: the live blocks of every table do not overlap,
/// their stamps are intact, each small one is allocated in its arena, every allocated small
/// block is in some table (leaks are counted; only a crash may leave some), and the arenas take
/// far less memory than was allocated in total (blocks are reused).
package enum AllocatorStress {
    package struct Options: Sendable {
        package var rounds = 12
        package var threads = 3
        package var operations = 1000
        package var handoff = 16
        package var seed: UInt64 = 1
        package var slabsPerArena = 16
        package var participants = 3

        package init() {}
    }

    static let rootName = "stress.alloc"
    static let maxMembers = 8
    static let maxThreads = 4
    static let entries = 256
    static let entryBytes = 32
    static let progressOffset = 64
    static let progressBytes = 64
    static let arrivalsOffset = 1024
    static let maxRounds = 64
    static let tablesOffset = arrivalsOffset + 4 * maxRounds * 8
    static var blockBytes: Int { tablesOffset + maxMembers * maxThreads * entries * entryBytes }

    package static func run(member: Member, options: Options, logger: Logger) async throws -> ExampleOutcome {
        guard member.id >= 1, member.id <= UInt64(maxMembers), options.threads <= maxThreads,
            options.participants <= maxMembers, options.handoff <= entries, options.rounds <= maxRounds
        else {
            throw MemberError(.invalidArgument, "alloc-stress runs members 1...\(maxMembers), up to \(maxThreads) threads")
        }
        var allocatorOptions = SharedAllocator.Options()
        allocatorOptions.slabsPerArena = options.slabsPerArena
        let allocator = try await SharedAllocator.attach(to: member, options: allocatorOptions)
        let root = try await member.root(named: rootName, orCreate: blockBytes)
        let state = StressState(root: UInt(bitPattern: root), member: Int(member.id))
        let startA = state.progress(0)
        let startB = state.progress(1)
        let resumed = startA > 0 || startB > 0
        if resumed {
            note("resumes: phase A done through round \(startA), phase B through round \(startB)")
            // The previous process may have published phase B's progress and died before it
            // arrived at the barrier that closes that phase; the others wait there for it.
            // Arriving again is harmless (a bit per member).
            if startB > 0 {
                try await state.barrier(member, phase: 1, round: Int(startB) - 1, participants: options.participants)
            }
        }

        var round = Int(startB)
        while round < options.rounds {
            if state.progress(0) <= UInt64(round) {
                // Take back what the others freed into this member's arenas in the last phase B.
                try await allocator.reclaimRemoteFrees()
                try await phaseA(round: round, allocator: allocator, state: state, options: options)
                state.setProgress(0, UInt64(round + 1))
                try await member.commit()
            }
            try await state.barrier(member, phase: 0, round: round, participants: options.participants)
            note("round \(round) phase A done")
            try await phaseB(
                round: round, allocator: allocator, state: state, options: options, redo: resumed && round == Int(startB))
            state.setProgress(1, UInt64(round + 1))
            try await member.commit()
            try await state.barrier(member, phase: 1, round: round, participants: options.participants)
            note("round \(round) phase B done")
            round += 1
        }
        try await state.barrier(member, phase: 2, round: 0, participants: options.participants)
        var outcome = check(allocator: allocator, root: UInt(bitPattern: root), options: options)
        outcome.fields["resumed"] = .bool(resumed)
        let statistics = allocator.statistics
        outcome.fields["arenas_here"] = .int(Int64(statistics.arenas))
        outcome.fields["remote_frees_reclaimed_here"] = .int(Int64(statistics.remoteFreesReclaimed))
        outcome.fields["anomalies_here"] = .int(Int64(statistics.anomalies))
        // Everyone checked before anyone's writes could change what the others read.
        try await state.barrier(member, phase: 3, round: 0, participants: options.participants)
        return outcome
    }

    static func note(_ line: String) {
        FileHandle.standardError.write(Data("alloc-stress: \(line)\n".utf8))
    }

    // MARK: - Phase A

    private static func phaseA(round: Int, allocator: SharedAllocator, state: StressState, options: Options)
        async throws
    {
        let largeFrees = Mutex<[UInt]>([])
        let failure = Mutex<String?>(nil)
        let counters = Mutex<(bytes: UInt64, allocations: UInt64, frees: UInt64)>((0, 0, 0))
        var threads: [Thread] = []
        let done = DispatchGroup()
        for t in 0..<options.threads {
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                Member.prepareThread()
                var random = StressRandom(
                    seed: options.seed &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(state.member << 40 | t << 32 | round))
                var bytes: UInt64 = 0
                var allocations: UInt64 = 0
                var frees: UInt64 = 0
                for op in 0..<options.operations {
                    let entry = state.entry(member: state.member, thread: t, index: random.below(entries))
                    if entry[0] != 0 {
                        let address = UInt(entry[0])
                        if let problem = verify(address: address, size: Int(entry[1]), stamp: entry[2]) {
                            failure.withLock { $0 = $0 ?? problem }
                            return
                        }
                        if Int(entry[1]) > SharedAllocator.largestSmallBlock {
                            largeFrees.withLock { $0.append(address) }
                        } else {
                            do throws(MemberError) {
                                guard try allocator.freeLocally(UnsafeMutableRawPointer(bitPattern: address)!) else {
                                    failure.withLock { $0 = $0 ?? "own block 0x\(String(address, radix: 16)) is not local" }
                                    return
                                }
                            } catch {
                                failure.withLock { $0 = $0 ?? "free of own block: \(error)" }
                                return
                            }
                        }
                        entry[0] = 0
                        frees += 1
                    } else {
                        let size = random.size()
                        let address: UInt
                        do {
                            address = try allocate(allocator, size)
                        } catch {
                            failure.withLock { $0 = $0 ?? "allocate \(size): \(error)" }
                            return
                        }
                        let stamp = UInt64(state.member) << 48 | UInt64(t) << 40 | UInt64(round * options.operations + op)
                        fill(address: address, size: size, stamp: stamp)
                        entry[1] = UInt64(size)
                        entry[2] = stamp
                        entry[0] = UInt64(address)
                        if size <= SharedAllocator.largestSmallBlock { bytes += UInt64(size) }
                        allocations += 1
                    }
                }
                counters.withLock {
                    $0.bytes += bytes
                    $0.allocations += allocations
                    $0.frees += frees
                }
            }
            thread.stackSize = 1 << 20
            threads.append(thread)
            thread.start()
        }
        await withCheckedContinuation { continuation in done.notify(queue: .global()) { continuation.resume() } }
        if let problem = failure.withLock({ $0 }) { throw MemberError(.invalidArgument, problem) }
        // The threads joined: a release now cuts through no allocation.
        for address in largeFrees.withLock({ $0 }) {
            try await allocator.free(UnsafeMutableRawPointer(bitPattern: address)!)
        }
        let totals = counters.withLock { $0 }
        state.add(bytes: totals.bytes, allocations: totals.allocations, frees: totals.frees)
    }

    /// The fast path, and the async one (from this OS thread) when it needs a consensus round.
    private static func allocate(_ allocator: SharedAllocator, _ size: Int) throws -> UInt {
        if let block = try allocator.allocateLocally(byteCount: size) { return UInt(bitPattern: block) }
        let result = Mutex<Result<UInt, MemberError>?>(nil)
        let semaphore = DispatchSemaphore(value: 0)
        Task {
            do throws(MemberError) {
                let block = try await allocator.allocate(byteCount: size)
                result.withLock { $0 = .success(UInt(bitPattern: block)) }
            } catch {
                result.withLock { $0 = .failure(error) }
            }
            semaphore.signal()
        }
        semaphore.wait()
        return try result.withLock { $0! }.get()
    }

    // MARK: - Phase B

    private static func phaseB(round: Int, allocator: SharedAllocator, state: StressState, options: Options, redo: Bool)
        async throws
    {
        let next = state.member % options.participants + 1
        for index in 0..<options.handoff {
            let entry = state.entry(member: next, thread: 0, index: index)
            guard entry[0] != 0 else { continue }
            let address = UInt(entry[0])
            if let problem = verify(address: address, size: Int(entry[1]), stamp: entry[2]) {
                // Redoing a round after a restart: this member's previous process may have freed
                // the block (its free publishes first) and lost only the emptying of the entry;
                // by now the owner may have taken the block back and stamped it anew (a stamp of
                // the owner's, later in its sequence). Then the entry is stale, not the block;
                // anything else is a lost stamp.
                let now = UnsafeRawPointer(bitPattern: address)!.load(as: UInt64.self)
                let reused = now >> 48 == UInt64(next) && now & (1 << 40 - 1) > entry[2] & (1 << 40 - 1)
                guard redo, reused else {
                    throw MemberError(.invalidArgument, "handoff from member \(next): \(problem)")
                }
                note("round \(round) redo: handoff entry \(index) is stale (\(problem)); its block was freed before")
                entry[0] = 0
                continue
            }
            do throws(MemberError) {
                try await allocator.free(UnsafeMutableRawPointer(bitPattern: address)!)
            } catch {
                // Freed by this member's previous process, whose emptying of the entry was lost.
                guard redo, error.code == .notAllocated else { throw error }
            }
            entry[0] = 0
            state.add(remoteFrees: 1)
        }
    }

    // MARK: - Stamps

    static func fill(address: UInt, size: Int, stamp: UInt64) {
        let raw = UnsafeMutableRawPointer(bitPattern: address)!
        let byte = UInt8(truncatingIfNeeded: (stamp &* 0x9E37_79B9_7F4A_7C15) >> 56)
        raw.storeBytes(of: stamp, as: UInt64.self)
        if size > 16 { (raw + 8).initializeMemory(as: UInt8.self, repeating: byte, count: size - 16) }
        raw.storeBytes(of: ~stamp, toByteOffset: max(8, size - 8) & ~7, as: UInt64.self)
    }

    static func verify(address: UInt, size: Int, stamp: UInt64) -> String? {
        let raw = UnsafeRawPointer(bitPattern: address)!
        let byte = UInt8(truncatingIfNeeded: (stamp &* 0x9E37_79B9_7F4A_7C15) >> 56)
        let last = max(8, size - 8) & ~7
        guard raw.load(as: UInt64.self) == stamp, raw.load(fromByteOffset: last, as: UInt64.self) == ~stamp else {
            return "block 0x\(String(address, radix: 16)) of \(size) bytes lost its stamp \(String(stamp, radix: 16))"
        }
        for offset in 8..<max(8, last) where raw.load(fromByteOffset: offset, as: UInt8.self) != byte {
            return "block 0x\(String(address, radix: 16)) of \(size) bytes: byte \(offset) was overwritten"
        }
        return nil
    }

    // MARK: - The check

    private static func check(allocator: SharedAllocator, root: UInt, options: Options) -> ExampleOutcome {
        let state = StressState(root: root, member: 0)
        var live: [(address: UInt, size: Int, stamp: UInt64)] = []
        var problems: [String] = []
        for m in 1...options.participants {
            for t in 0..<maxThreads {
                for index in 0..<entries {
                    let entry = state.entry(member: m, thread: t, index: index)
                    guard entry[0] != 0 else { continue }
                    live.append((UInt(entry[0]), Int(entry[1]), entry[2]))
                }
            }
        }
        var badStamps = 0
        var notAllocated = 0
        for block in live {
            if let problem = verify(address: block.address, size: block.size, stamp: block.stamp) {
                badStamps += 1
                if problems.count < 5 { problems.append(problem) }
            }
            if block.size <= SharedAllocator.largestSmallBlock,
                allocator.isAllocated(UnsafeRawPointer(bitPattern: block.address)!) != true
            {
                notAllocated += 1
                if problems.count < 5 { problems.append("live block 0x\(String(block.address, radix: 16)) is free in its arena") }
            }
        }
        // No overlap: by address, each block (its usable size for a small one) ends before the next.
        let extents = live.map { block -> (UInt, UInt) in
            let usable = allocator.usableSize(of: UnsafeRawPointer(bitPattern: block.address)!) ?? block.size
            return (block.address, block.address + UInt(max(usable, block.size)))
        }.sorted { $0.0 < $1.0 }
        var overlaps = 0
        for i in extents.indices.dropFirst() where extents[i].0 < extents[i - 1].1 {
            overlaps += 1
            if problems.count < 5 {
                problems.append("blocks at 0x\(String(extents[i - 1].0, radix: 16)) and 0x\(String(extents[i].0, radix: 16)) overlap")
            }
        }
        let liveSmall = Set(live.filter { $0.size <= SharedAllocator.largestSmallBlock }.map(\.address))
        let allocated = allocator.allocatedSmallBlocks()
        let leaked = allocated.filter { !liveSmall.contains($0.address) }.count
        let arenas = allocator.arenaExtents()
        let arenaBytes = arenas.reduce(0) { $0 + $1.bytes }
        var cumulative: UInt64 = 0
        var allocations: UInt64 = 0
        var remoteFrees: UInt64 = 0
        for m in 1...options.participants {
            let progress = state.progressWords(member: m)
            cumulative += progress[2]
            allocations += progress[3]
            remoteFrees += progress[5]
        }
        // Arenas on top of the heap: none may overlap another, nor a large block.
        let reuse = cumulative == 0 ? 0 : Double(arenaBytes) / Double(cumulative)
        let ok = badStamps == 0 && notAllocated == 0 && overlaps == 0 && reuse < 0.5
        return ExampleOutcome(
            ok: ok,
            fields: [
                "live_blocks": .int(Int64(live.count)), "bad_stamps": .int(Int64(badStamps)),
                "live_not_allocated": .int(Int64(notAllocated)), "overlaps": .int(Int64(overlaps)),
                "leaked_small_blocks": .int(Int64(leaked)), "allocated_small_blocks": .int(Int64(allocated.count)),
                "arenas": .int(Int64(arenas.count)), "arena_bytes": .int(Int64(arenaBytes)),
                "small_bytes_allocated_in_total": .uint(cumulative), "allocations": .uint(allocations),
                "remote_frees": .uint(remoteFrees), "arena_bytes_per_allocated_byte": .double(reuse),
                "problems": .array(problems.map { .string($0) }),
            ])
    }
}

/// The stress job's block in the heap: progress per member, then the tables.
struct StressState: @unchecked Sendable {
    // @unchecked: an address; the job's phases and barriers order every access to the bytes.
    let root: UInt
    let member: Int

    /// Progress word `i` of this member: 0 phase A done through, 1 phase B done through,
    /// 2 small bytes allocated, 3 allocations, 4 frees, 5 remote frees.
    func progressWords(member m: Int) -> UnsafeMutablePointer<UInt64> {
        UnsafeMutableRawPointer(bitPattern: root + UInt(AllocatorStress.progressOffset + (m - 1) * AllocatorStress.progressBytes))!
            .assumingMemoryBound(to: UInt64.self)
    }

    func progress(_ i: Int) -> UInt64 { progressWords(member: member)[i] }
    func setProgress(_ i: Int, _ value: UInt64) { progressWords(member: member)[i] = value }

    func add(bytes: UInt64 = 0, allocations: UInt64 = 0, frees: UInt64 = 0, remoteFrees: UInt64 = 0) {
        let words = progressWords(member: member)
        words[2] &+= bytes
        words[3] &+= allocations
        words[4] &+= frees
        words[5] &+= remoteFrees
    }

    /// Publishes this process's writes, sets this member's bit in the arrival word of (phase,
    /// round) with a committed compare-and-swap (once, however often it is repeated), and waits
    /// until every participant's bit is set. The wait ends with a linearizable read that saw the
    /// last arrival, so every release made before an arrival has applied here.
    func barrier(_ member: Member, phase: Int, round: Int, participants: Int) async throws(MemberError) {
        try await member.commit()
        let word = UnsafeMutableRawPointer(
            bitPattern: root + UInt(AllocatorStress.arrivalsOffset + (phase * AllocatorStress.maxRounds + round) * 8))!
            .assumingMemoryBound(to: UInt64.self)
        let mine: UInt64 = 1 << UInt64(self.member - 1)
        let all: UInt64 = (1 << UInt64(participants)) - 1
        var seen = try await member.atomicLoad(word)
        while seen & mine == 0 {
            let result = try await member.compareAndSwap(word, expected: seen, desired: seen | mine)
            seen = result.exchanged ? seen | mine : result.old
        }
        while seen & all != all {
            try? await Task.sleep(for: .milliseconds(3))
            seen = try await member.atomicLoad(word)
        }
    }

    /// Entry `index` of (member, thread)'s table: address, size, stamp.
    func entry(member m: Int, thread t: Int, index: Int) -> UnsafeMutablePointer<UInt64> {
        let offset =
            AllocatorStress.tablesOffset
            + (((m - 1) * AllocatorStress.maxThreads + t) * AllocatorStress.entries + index) * AllocatorStress.entryBytes
        return UnsafeMutableRawPointer(bitPattern: root + UInt(offset))!.assumingMemoryBound(to: UInt64.self)
    }
}

/// The stress job's random numbers (SplitMix64) and size distribution.
struct StressRandom {
    private var generator: SplitMix64

    init(seed: UInt64) { generator = SplitMix64(seed: seed) }

    mutating func next() -> UInt64 { generator.next() }

    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }

    /// 90%: 16 B ... 1 KiB, 9%: up to 8 KiB, 1%: 8 KiB ... 20 KiB (committed one by one).
    mutating func size() -> Int {
        let roll = below(100)
        if roll < 90 { return 16 + below(1024 - 16 + 1) }
        if roll < 99 { return 1025 + below(8192 - 1025 + 1) }
        return 8193 + below(20_000 - 8193)
    }
}
