import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The runtime across processes (issue 5): members that are applications too, each a
/// `gallocy internal` check process (Sources/Gallocy/RuntimeChecks) reporting JSON lines.
/// Figures go to stderr (`RuntimeProcessTests:` lines); no assertion is about time.
@Suite(.serialized, .enabled(if: Cluster.nodeCommandAvailable, "gallocy has no `node` subcommand yet"))
struct RuntimeProcessTests {
    /// One writer fills 8 pages with a generation number under a lock and releases them, for 5 s;
    /// two readers on the other members read the pages without locks in a tight loop. A reader may
    /// be stale and a pass may span an apply, but no pass may see a generation after an older one
    /// (a release half applied: `TornPageCheck`), and after the last barrier every member holds the
    /// writer's last generation.
    @Test(.timeLimit(.minutes(4)))
    func racyReadersOnOtherMembersNeverSeeAReleaseHalfApplied() async throws {
        try await MemberProcessGroup.run(size: 3) { group in
            let check = ["internal", "torn-page", "--pages", "8", "--seconds", "5"]
            try group.start(1, command: check + ["--role", "writer"])
            try group.start(2, command: check + ["--role", "reader"])
            try group.start(3, command: check + ["--role", "reader"])
            let statuses = try await group.waitForExit(timeout: .seconds(180))
            var results: [Int: JSONValue] = [:]
            for id in 1...3 {
                results[id] = try #require(
                    group.lines(id).first { $0["event"]?.string == "result" }, "member \(id) printed no result")
            }
            for id in 1...3 { Cluster.printToStandardError("RuntimeProcessTests: torn-page member \(id): \(results[id]!)") }
            let writer = try #require(results[1])
            let generations = try #require(writer["generations"]?.unsigned)
            #expect(generations >= 10, "the writer released only \(generations) generations")
            for id in 2...3 {
                let reader = try #require(results[id])
                #expect(reader["torn_passes"]?.integer == 0, "member \(id): \(reader)")
                #expect(reader["invalid_words"]?.integer == 0, "member \(id): \(reader)")
                #expect(reader["backwards"]?.integer == 0, "member \(id): \(reader)")
                // Not vacuous: the reader saw the pages change many times while it read them,
                // and entries were applied with their pages hidden here.
                #expect((reader["distinct_generations"]?.integer ?? 0) >= 5, "member \(id): \(reader)")
                #expect((reader["passes"]?.integer ?? 0) >= 1000, "member \(id): \(reader)")
                #expect((reader["runtime"]?["pages_hidden"]?.integer ?? 0) > 0, "member \(id): \(reader)")
            }
            for id in 1...3 {
                #expect(results[id]?["final_generation"]?.unsigned == generations, "member \(id): \(results[id]!)")
                #expect(results[id]?["final_uniform"] == .bool(true), "member \(id): \(results[id]!)")
                #expect(statuses[id] == .exited(0), "member \(id): \(statuses[id].map { "\($0)" } ?? "?")")
            }
        }
    }

    /// Member A takes a lock with a 1500 ms lease, writes two words (in two pages) and is stopped
    /// (SIGSTOP) before it releases; member B takes the lock once the lease ran out, writes the
    /// first word only and releases; A continues (SIGCONT) and releases: the release is rejected
    /// (`leaseExpired`), A's local view shows B's first word and a zero second word at once (the
    /// runtime undid A's writes), and every member ends with exactly that. The log holds A's
    /// write entry, rejected.
    @Test(.timeLimit(.minutes(4)))
    func aReleaseAfterTheLeaseExpiredIsRejectedAndUndoneLocally() async throws {
        let holderValue: UInt64 = 0xAAAA_AAAA_0000_0001
        let takerValue: UInt64 = 0xBBBB_BBBB_0000_0002
        try await MemberProcessGroup.run(size: 3) { group in
            let holderGo = "\(group.directory)/holder.go"
            let takerGo = "\(group.directory)/taker.go"
            let check = ["internal", "lease-expiry"]
            try group.start(1, command: check + ["--role", "holder", "--lease-ms", "1500", "--go-file", holderGo])
            try group.start(2, command: check + ["--role", "taker", "--go-file", takerGo])
            try group.start(3, command: check + ["--role", "observer"])
            let holding = try await group.waitForEvent(1, "holding", timeout: .seconds(120))
            let holder = try #require(group.process(1))
            try #require(holder.send(SIGSTOP), "SIGSTOP to member 1")
            let stoppedAt = ContinuousClock.now
            #expect(holding["word0"]?.unsigned == holderValue)
            FileManager.default.createFile(atPath: takerGo, contents: nil)
            let released = try await group.waitForEvent(2, "released", timeout: .seconds(90))
            let stoppedFor = stoppedAt.duration(to: .now)
            FileManager.default.createFile(atPath: holderGo, contents: nil)
            holder.send(SIGCONT)
            let unlock = try await group.waitForEvent(1, "unlock", timeout: .seconds(90))
            var finals: [Int: JSONValue] = [:]
            for id in 1...3 { finals[id] = try await group.waitForEvent(id, "final", timeout: .seconds(90)) }
            let statuses = try await group.waitForExit(timeout: .seconds(60))
            Cluster.printToStandardError(
                "RuntimeProcessTests: lease-expiry: A stopped for \(stoppedFor); A \(holding); B \(released); A \(unlock); "
                    + "finals \((1...3).map { "\($0): \(finals[$0]!)" }.joined(separator: ", "))")

            // B got the lock after A's lease, with a later epoch, and saw none of A's writes.
            let holderEpoch = try #require(holding["epoch"]?.unsigned)
            let takerEpoch = try #require(released["epoch"]?.unsigned)
            #expect(takerEpoch > holderEpoch)
            #expect(released["word0_before"]?.unsigned == 0, "B saw A's unpublished write: \(released)")
            #expect(released["word1_before"]?.unsigned == 0, "B saw A's unpublished write: \(released)")
            // A's release was rejected and undone in A's own view.
            #expect(unlock["released"] == .bool(false), "\(unlock)")
            #expect(unlock["error"]?.string == "leaseExpired", "\(unlock)")
            #expect(unlock["value_after"]?.unsigned == takerValue, "A's view after the rejected release: \(unlock)")
            #expect(unlock["word1_after"]?.unsigned == 0, "A's second word was not undone: \(unlock)")
            #expect(unlock["undone"]?.integer == 1, "\(unlock)")
            for id in 1...3 {
                let final = try #require(finals[id])
                #expect(final["word0"]?.unsigned == takerValue, "member \(id): \(final)")
                #expect(final["word1"]?.unsigned == 0, "member \(id): \(final)")
                #expect(statuses[id] == .exited(0), "member \(id): \(statuses[id].map { "\($0)" } ?? "?")")
            }

            // The log (member 2's copy): A's acquire, B's grant at or after A's lease ended (by
            // a lock_expire entry or B's own acquire), and A's write entry, rejected.
            let entries = try dumpLog(group, member: 2)
            let locks = entries.filter { $0["name"]?.string == "check.lease.lock" }
            let aGrant = try #require(
                locks.first { $0["type"]?.string == "lock_acquire" && $0["result"]?["epoch"]?.unsigned == holderEpoch
                    && $0["result"]?["outcome"]?.string == "lock_granted" }, "\(locks)")
            let aExpiresAt = try #require(aGrant["result"]?["expires_at"]?.unsigned)
            let bGrant = try #require(
                locks.first { $0["type"]?.string == "lock_acquire" && $0["result"]?["epoch"]?.unsigned == takerEpoch },
                "\(locks)")
            let expiry = locks.first { $0["type"]?.string == "lock_expire" && $0["epoch"]?.unsigned == holderEpoch }
            #expect(expiry != nil || (bGrant["now"]?.unsigned ?? 0) >= aExpiresAt, "A: \(aGrant), B: \(bGrant)")
            let aWrite = try #require(
                entries.first {
                    $0["type"]?.string == "write" && $0["member"]?.unsigned == 1
                        && $0["release_epoch"]?.unsigned == holderEpoch
                }, "no write entry of member 1 releasing epoch \(holderEpoch)")
            #expect(aWrite["result"]?["outcome"]?.string == "rejected", "\(aWrite)")
            Cluster.printToStandardError(
                "RuntimeProcessTests: lease-expiry log: expiry \(expiry.map { "\($0)" } ?? "by B's acquire at now \(bGrant["now"]!) >= \(aExpiresAt)"); A's write \(aWrite["result"]!)")
        }
    }

    /// `gallocy log dump --json --results` of a member's data directory, one object per entry.
    private func dumpLog(_ group: MemberProcessGroup, member: Int) throws -> [JSONValue] {
        let out = "\(group.directory)/dump\(member).json"
        let process = try ChildProcess.spawn(
            executable: group.executable,
            arguments: [
                "log", "dump", "--data", "\(group.directory)/m\(member)", "--json", "--results", "--type",
                "lock_acquire,lock_expire,write",
            ], standardOutput: out, standardError: "\(group.directory)/dump\(member).err")
        guard process.wait(timeout: .seconds(60)) == .exited(0) else {
            process.killAndReap()
            throw TestSupportError(.process, "gallocy log dump of member \(member) failed")
        }
        let text = try String(contentsOfFile: out, encoding: .utf8)
        return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }
    }
}
