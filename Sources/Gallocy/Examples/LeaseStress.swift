import Dispatch
import GallocyCodec
import GallocyRuntime
import Foundation
import Logging

/// `gallocy internal lease-stress`: workloads on sequential memory (page leases) for the
/// multi-process tests. No locks, no releases: plain loads and stores.
///
/// - `sc`: `writers` members (ids 1...writers) each own two words, `A(i)` alone on page i of
///   the block and `B(i)` in slot i of the shared page `writers`. In iteration k a member writes
///   k to its A and its B, then reads every other member's A and B; it records every access in
///   program order (`W|R A|B owner value`, one per line, into `historyPath`). Each word has one
///   writer and increasing values, so a checker can decide whether a sequentially consistent
///   order exists (writes to A(i) then reads of A(j) is the store-buffering / Dekker litmus:
///   two members that both read the other's old value is a cycle). At the end (after a barrier)
///   every member reads all the words: they must all be `iterations`.
/// - `hold`: member `holderID` writes one page in a tight loop, the others write it every 20 ms
///   and measure how long each write took (the tests stop or kill the holder).
package enum LeaseStress {
    package struct Options: Sendable {
        package var workload: String
        package var writers: Int
        package var iterations: Int
        package var lease: Duration
        package var historyPath: String?
        package var holderID: UInt64
        package var seconds: Double
        package var align: Bool

        package init(
            workload: String, writers: Int, iterations: Int, lease: Duration, historyPath: String?, holderID: UInt64,
            seconds: Double, align: Bool
        ) {
            self.workload = workload
            self.writers = writers
            self.iterations = iterations
            self.lease = lease
            self.historyPath = historyPath
            self.holderID = holderID
            self.seconds = seconds
            self.align = align
        }
    }

    package static func run(
        member: Member, options: Options, logger: Logger, announce: @escaping @Sendable (String) -> Void
    ) async throws -> ExampleOutcome {
        member.configurePageLeases(ttl: options.lease)
        switch options.workload {
        case "sc": return try await sequential(member: member, options: options, logger: logger)
        case "hold": return try await hold(member: member, options: options, announce: announce)
        default: throw MemberError(.invalidArgument, "unknown workload \(options.workload)")
        }
    }

    /// The block at root `name`, made of `bytes` of sequential memory by whoever gets there first.
    static func sharedBlock(member: Member, name: String, bytes: Int) async throws(MemberError) -> UnsafeMutableRawPointer {
        if let block = try await member.root(named: name) { return block }
        let lock = try await member.lock("lease.stress.create." + name, lease: .seconds(20))
        if let block = try await member.root(named: name) {
            try await member.unlock(lock)
            return block
        }
        let block = try await member.allocate(byteCount: bytes, mode: .sequential)
        try await member.setRoot(named: name, to: block)
        try await member.unlock(lock)
        return block
    }

    /// Runs `body` on a thread of its own (faults park the thread; keep them off the pool).
    static func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            let thread = Thread {
                Member.prepareThread()
                continuation.resume(returning: body())
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    private struct Words: @unchecked Sendable {
        let base: UnsafeMutablePointer<UInt64>
        let pageWords: Int
        let writers: Int
        func a(_ owner: Int) -> UnsafeMutablePointer<UInt64> { base + owner * pageWords }
        func b(_ owner: Int) -> UnsafeMutablePointer<UInt64> { base + writers * pageWords + owner }
    }

    static func sequential(member: Member, options: Options, logger: Logger) async throws -> ExampleOutcome {
        let writers = options.writers
        guard member.id >= 1, member.id <= UInt64(writers) else {
            throw MemberError(.invalidArgument, "the sc workload needs member ids 1...\(writers)")
        }
        let pageSize = Int(member.settings.pageSize)
        let block = try await sharedBlock(member: member, name: "lease.stress.sc", bytes: pageSize * (writers + 1))
        let words = Words(
            base: block.assumingMemoryBound(to: UInt64.self), pageWords: pageSize / 8, writers: writers)
        let me = Int(member.id) - 1
        let iterations = options.iterations
        let align = options.align
        try await member.barrier("lease.stress.sc.start", participants: writers)
        let clock = ContinuousClock()
        let started = clock.now
        let history: [String] = await onThread {
            var lines: [String] = []
            lines.reserveCapacity(iterations * 2 * writers)
            for k in 1...UInt64(iterations) {
                if align {
                    // Loosely in step: start iteration k once every other member finished k - 1.
                    for j in 0..<writers where j != me {
                        while words.a(j).pointee < k - 1 { usleep(200) }
                    }
                }
                words.a(me).pointee = k
                lines.append("W A \(me + 1) \(k)")
                words.b(me).pointee = k
                lines.append("W B \(me + 1) \(k)")
                for j in 0..<writers where j != me {
                    lines.append("R A \(j + 1) \(words.a(j).pointee)")
                    lines.append("R B \(j + 1) \(words.b(j).pointee)")
                }
            }
            return lines
        }
        let elapsed = started.duration(to: clock.now)
        if let path = options.historyPath {
            try (history.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        }
        try await member.barrier("lease.stress.sc.done", participants: writers)
        let final: [UInt64] = await onThread {
            (0..<writers).flatMap { j in [words.a(j).pointee, words.b(j).pointee] }
        }
        let ok = final.allSatisfy { $0 == UInt64(iterations) }
        let counters = member.leaseCounters
        return ExampleOutcome(
            ok: ok,
            fields: [
                "final": .array(final.map { .uint($0) }), "operations": .uint(UInt64(history.count)),
                "seconds": .double(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18),
                "grants": .uint(UInt64(counters.grants)), "releases": .uint(UInt64(counters.releases)),
                "discarded": .uint(UInt64(counters.discarded)),
            ])
    }

    static func hold(member: Member, options: Options, announce: @escaping @Sendable (String) -> Void) async throws
        -> ExampleOutcome
    {
        let pageSize = Int(member.settings.pageSize)
        let block = try await sharedBlock(member: member, name: "lease.stress.hold", bytes: pageSize)
        let word = UnsafeMutablePointer<UInt64>(bitPattern: UInt(bitPattern: block))!
        struct Box: @unchecked Sendable { let word: UnsafeMutablePointer<UInt64> }
        let box = Box(word: word)
        let seconds = options.seconds
        let holder = member.id == options.holderID
        let result: (writes: Int, maxMillis: Double, slow: [String]) = await onThread {
            let clock = ContinuousClock()
            let end = clock.now.advanced(by: .milliseconds(Int64(seconds * 1000)))
            var writes = 0
            var maxMillis = 0.0
            var slow: [String] = []
            var announced = false
            while clock.now < end {
                let t0 = clock.now
                box.word.pointee &+= 1
                let took = t0.duration(to: clock.now)
                let millis = Double(took.components.seconds) * 1000 + Double(took.components.attoseconds) / 1e15
                writes += 1
                maxMillis = max(maxMillis, millis)
                if millis > 250 { slow.append(String(format: "%.0f", millis)) }
                if holder {
                    if !announced {
                        announced = true
                        announce("holding")
                    }
                    usleep(100)
                } else {
                    usleep(20_000)
                }
            }
            return (writes, maxMillis, slow)
        }
        return ExampleOutcome(
            ok: true,
            fields: [
                "holder": .bool(holder), "writes": .uint(UInt64(result.writes)), "max_write_ms": .double(result.maxMillis),
                "slow_writes_ms": .array(result.slow.map { .string($0) }),
            ])
    }
}
