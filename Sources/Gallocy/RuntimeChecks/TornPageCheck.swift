import Dispatch
import Foundation
import GallocyCodec
import GallocyRuntime
import Synchronization

/// `gallocy internal torn-page`: one writer member fills `pages` heap pages with a generation
/// number under a lock and releases them, generation after generation; reader members read the
/// pages in a tight loop without any lock (racy reads, allowed to be stale) and check that they
/// never see a release half applied (DESIGN "How a write flows", step 4: the pages of one entry
/// become visible together).
///
/// Every 8-byte word of the pages holds `encode(g)` (g times an odd constant, so that every byte
/// changes from one generation to the next and each page's diff is one run). A read pass is not a
/// snapshot: it reads word after word, forward over the pages and back, while entries keep
/// applying (most passes read one word of each page, which takes far less time than an apply;
/// every 256th reads every word). So a pass may well see two generations (it spanned an apply: `mixedPasses`). What a
/// reader can never see, if entries apply atomically, is a decrease: generations only grow, so
/// reads made one after the other (each load ordered after the previous one) see non-decreasing
/// generations. A pass that reads generation g and later, in the same pass, an older one proves
/// that at that moment the heap held part of an entry without the rest: a torn read. A word that
/// decodes to no generation the writer wrote is counted as torn too. A pass that starts below
/// what the previous pass ended with is counted as `backwards` (a member's view went back).
package enum TornPageCheck {
    package enum Role: String, Sendable, CaseIterable {
        case writer, reader
    }

    package struct Options: Sendable {
        package var role: Role
        package var pages = 8
        package var seconds: Double = 4
        package var participants = 3
        package var leaseMillis = 5000
        package init(role: Role) { self.role = role }
    }

    package static let blockRoot = "check.torn.block"
    package static let lockName = "check.torn.lock"
    static let multiplier: UInt64 = 0x9E37_79B9_7F4A_7C15
    static let inverse: UInt64 = {
        var x = multiplier
        for _ in 0..<6 { x = x &* (2 &- multiplier &* x) }
        return x
    }()
    /// No run writes more generations than this; a word that decodes above it is garbage.
    static let maxGeneration: UInt64 = 1 << 40

    package static func encode(_ generation: UInt64) -> UInt64 { generation &* multiplier }
    package static func decode(_ word: UInt64) -> UInt64 { word &* inverse }

    package static func run(member: Member, options: Options) async throws -> Bool {
        let pageSize = Int(member.settings.pageSize)
        let block = try await member.root(named: blockRoot, orCreate: (options.pages + 1) * pageSize)
        let start = MemberJobProcess.pageAligned(block, pageSize: pageSize)
        let count = options.pages * pageSize / 8
        let words = start.bindMemory(to: UInt64.self, capacity: count)
        MemberJobProcess.emit([
            "event": .string("ready"), "role": .string(options.role.rawValue), "member": .uint(member.id),
            "address": .string("0x" + String(UInt(bitPattern: start), radix: 16)), "pages": .int(Int64(options.pages)),
        ])
        var fields: [String: JSONValue] = ["event": .string("result"), "role": .string(options.role.rawValue)]
        var ok = true
        switch options.role {
        case .writer:
            try await member.barrier("check.torn.start", participants: options.participants)
            let clock = ContinuousClock()
            let began = clock.now
            let end = began.advanced(by: .milliseconds(Int64(options.seconds * 1000)))
            var generation: UInt64 = 0
            var released = 0
            var expired = 0
            var latencies: [Double] = []
            while clock.now < end {
                let lock = try await member.lock(lockName, lease: .milliseconds(options.leaseMillis))
                // Granted: everything released before is visible here; go on from it.
                let next = decode(words[0]) + 1
                let value = encode(next)
                for i in 0..<count { words[i] = value }
                let t0 = clock.now
                do throws(MemberError) {
                    try await member.unlock(lock)
                    generation = next
                    released += 1
                    latencies.append(MemberJobProcess.millis(since: t0))
                } catch {
                    guard error.code == .leaseExpired else { throw error }
                    expired += 1
                }
            }
            let elapsed = MemberJobProcess.millis(since: began) / 1000
            try await member.barrier("check.torn.done", participants: options.participants)
            latencies.sort()
            fields["generations"] = .uint(generation)
            fields["releases"] = .int(Int64(released))
            fields["expired"] = .int(Int64(expired))
            fields["releases_per_s"] = .double((Double(released) / elapsed * 10).rounded() / 10)
            fields["release_p50_ms"] = .double(latencies.isEmpty ? 0 : latencies[latencies.count / 2])
            fields["release_max_ms"] = .double(latencies.last ?? 0)
        case .reader:
            let reader = RacyReader(words: UnsafePointer(words), count: count, pageWords: pageSize / 8)
            reader.start()
            try await member.barrier("check.torn.start", participants: options.participants)
            try await member.barrier("check.torn.done", participants: options.participants)
            let stats = await reader.stop()
            ok = stats.tornPasses == 0 && stats.invalidWords == 0 && stats.backwards == 0
            fields["passes"] = .int(Int64(stats.passes))
            fields["full_passes"] = .int(Int64(stats.fullPasses))
            fields["mixed_passes"] = .int(Int64(stats.mixedPasses))
            fields["torn_passes"] = .int(Int64(stats.tornPasses))
            fields["invalid_words"] = .int(Int64(stats.invalidWords))
            fields["backwards"] = .int(Int64(stats.backwards))
            fields["distinct_generations"] = .int(Int64(stats.distinctGenerations))
            fields["highest_seen"] = .uint(stats.highest)
            if let first = stats.firstViolation { fields["first_violation"] = .string(first) }
        }
        // After the barrier every release of the writer is visible here: all words equal.
        let final = decode(words[0])
        var uniform = true
        for i in 0..<count where words[i] != words[0] { uniform = false }
        ok = ok && uniform
        fields["final_generation"] = .uint(final)
        fields["final_uniform"] = .bool(uniform)
        let counters = member.runtimeCounters
        fields["runtime"] = .object([
            "releases": .int(Int64(counters.releases)), "accepted": .int(Int64(counters.accepted)),
            "undone": .int(Int64(counters.undone)), "changes": .int(Int64(counters.changes)),
            "pages_held": .int(Int64(counters.pagesHeld)), "pages_hidden": .int(Int64(counters.pagesHidden)),
        ])
        fields["ok"] = .bool(ok)
        MemberJobProcess.emit(fields)
        try await member.barrier("check.torn.exit", participants: options.participants)
        return ok
    }
}

/// A thread that reads the pages without locks until stopped (see `TornPageCheck`).
/// `@unchecked Sendable`: `stats` is written by the thread only, and read after it ended.
final class RacyReader: @unchecked Sendable {
    struct Stats: Sendable {
        var passes = 0
        var fullPasses = 0
        var mixedPasses = 0
        var tornPasses = 0
        var invalidWords = 0
        var backwards = 0
        var distinctGenerations = 0
        var highest: UInt64 = 0
        var firstViolation: String?
    }

    let words: UnsafePointer<UInt64>
    let count: Int
    let pageWords: Int
    private let stopFlag = Atomic<Bool>(false)
    private var stats = Stats()
    private let finished = DispatchSemaphore(value: 0)

    /// Only this word of each page is read (sample passes only): for pages of which only that
    /// word carries the generation.
    let onlyWord: Int?

    init(words: UnsafePointer<UInt64>, count: Int, pageWords: Int, onlyWord: Int? = nil) {
        self.words = words
        self.count = count
        self.pageWords = pageWords
        self.onlyWord = onlyWord
    }

    func start() {
        let thread = Thread { [self] in
            Member.prepareThread()
            loop()
            finished.signal()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Stops the thread and waits for it, blocking the caller (not for the cooperative pool).
    func stopNow() -> Stats {
        stopFlag.store(true, ordering: .releasing)
        finished.wait()
        return stats
    }

    func stop() async -> Stats {
        stopFlag.store(true, ordering: .releasing)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                self.finished.wait()
                continuation.resume()
            }
        }
        return stats
    }

    private func loop() {
        var s = Stats()
        var lastEnd: UInt64 = 0
        var seen: Set<UInt64> = []
        var sampleOffset = 0
        var round = 0
        while !stopFlag.load(ordering: .acquiring) {
            // Mostly sample passes (one word of each page, forward and back: a pass takes
            // nanoseconds, far less than an apply, so an apply that is not atomic shows), and
            // every `samplesPerFullPass` a full pass over every word.
            let full = onlyWord == nil && round % (Self.samplesPerFullPass + 1) == 0
            round += 1
            let reads = full ? 2 * count : 2 * (count / pageWords)
            sampleOffset = onlyWord ?? (sampleOffset + 1) % pageWords
            var previous: UInt64 = 0
            var low = UInt64.max
            var high: UInt64 = 0
            var torn = false
            for k in 0..<reads {
                // Forward, then back: a torn apply in either page order shows.
                let i: Int
                if full {
                    i = k < count ? k : reads - 1 - k
                } else {
                    let pages = reads / 2
                    i = (k < pages ? k : reads - 1 - k) * pageWords + sampleOffset
                }
                let generation = TornPageCheck.decode(words[i])
                // Keeps the loads in program order: the next one is not made before this one.
                atomicMemoryFence(ordering: .acquiring)
                if generation > TornPageCheck.maxGeneration {
                    s.invalidWords += 1
                    torn = true
                    if s.firstViolation == nil {
                        s.firstViolation =
                            "pass \(s.passes): word \(i) (page \(i / pageWords)) = 0x\(String(words[i], radix: 16)), no generation"
                    }
                    break
                }
                if k > 0 && generation < previous {
                    torn = true
                    if s.firstViolation == nil {
                        s.firstViolation =
                            "\(full ? "full" : "sample") pass \(s.passes): read \(k) (word \(i), page \(i / pageWords)) saw generation \(generation) after \(previous) earlier in the same pass"
                    }
                    break
                }
                if k == 0 && generation < lastEnd {
                    s.backwards += 1
                    if s.firstViolation == nil {
                        s.firstViolation = "pass \(s.passes) began at generation \(generation) after the last pass ended at \(lastEnd)"
                    }
                }
                previous = generation
                if generation < low { low = generation }
                if generation > high { high = generation }
            }
            s.passes += 1
            if full { s.fullPasses += 1 }
            if torn {
                s.tornPasses += 1
            } else {
                if low != high { s.mixedPasses += 1 }
                if seen.count < 1 << 20 {
                    seen.insert(low)
                    seen.insert(high)
                }
                lastEnd = previous
                if high > s.highest { s.highest = high }
            }
        }
        s.distinctGenerations = seen.count
        stats = s
    }

    /// Sample passes between two full passes.
    static let samplesPerFullPass = 255
}
