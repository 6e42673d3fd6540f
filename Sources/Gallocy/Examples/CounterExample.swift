import Foundation
import Logging

/// `gallocy example counter`: every member increments one shared counter under a lock until it
/// reaches the target. The counter block lives at the root "example.counter":
///
///     word 0: target    word 1: value    word 2 + m: increments made by member m (m < 64)
///
/// Each increment changes the value and the member's own count in the same critical section, so
/// a lost or doubled increment (a release that published half, or one applied twice) shows up as
/// `value != sum(counts)`. A member killed while holding the lock loses its lease (the leader
/// expires it) and its unpublished increment; restarted, it finds the block through the root
/// and goes on. Correct: value == target and the counts add up to it.
package enum CounterExample {
    package static let rootName = "example.counter"
    package static let maxMembers = 64

    package static func run(member: Member, target: UInt64, participants: Int, lease: Duration, logger: Logger)
        async throws -> ExampleOutcome
    {
        guard member.id < UInt64(maxMembers) else {
            throw MemberError(.invalidArgument, "the counter example keeps counts for member ids below \(maxMembers)")
        }
        let block = try await member.root(named: rootName, orCreate: 8 * (2 + maxMembers)) { raw in
            raw.storeBytes(of: target, as: UInt64.self)
        }
        let words = block.assumingMemoryBound(to: UInt64.self)
        let progress = { (done: Int, total: Int) in
            FileHandle.standardError.write(Data("progress: \(done)/\(total) increments (member \(member.id))\n".utf8))
        }
        var mine: UInt64 = 0
        var expired = 0
        while true {
            let lock = try await member.lock("example.counter", lease: lease)
            let value = words[1]
            if value >= words[0] {
                try await member.unlock(lock)
                break
            }
            words[1] = value + 1
            words[2 + Int(member.id)] += 1
            var failure: MemberError?
            do throws(MemberError) { try await member.unlock(lock) } catch { failure = error }
            if let failure {
                guard failure.code == .leaseExpired else { throw failure }
                // Our increment was not published (and is undone here): count it again.
                expired += 1
                logger.warning("lease expired before the release; the increment was discarded")
            } else {
                mine += 1
                let step = max(1, words[0] / 10)
                if (value + 1) % step == 0 { progress(Int(value + 1), Int(words[0])) }
            }
        }
        // Everyone finished: the final values, read under the lock.
        let lock = try await member.lock("example.counter", lease: lease)
        let value = words[1]
        let targetValue = words[0]
        var sum: UInt64 = 0
        for m in 0..<maxMembers { sum &+= words[2 + m] }
        try await member.unlock(lock)
        // Generation 0: a member restarted after it arrived is counted once, and one restarted after
        // the barrier opened passes at once instead of waiting for a second opening.
        try await member.barrier("example.counter.done", participants: participants, generation: 0)
        return ExampleOutcome(
            ok: value == targetValue && sum == value,
            fields: [
                "target": .uint(targetValue), "value": .uint(value), "sum_of_counts": .uint(sum),
                "increments_here": .uint(mine), "expired_leases": .int(Int64(expired)),
            ])
    }
}
