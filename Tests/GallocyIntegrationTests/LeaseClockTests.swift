import Foundation
import Testing

/// Lock leases are timed by the leader's clock: the leader stamps the time into every acquire
/// forwarded to it (RaftDriver.stampLeaderTime) and expires leases by the same clock. A member
/// whose clock is far off (GALLOCY_CLOCK_OFFSET_MS) can neither take a lock that is still held
/// nor stretch a lease it takes.
@Suite(.serialized, .enabled(if: Cluster.nodeCommandAvailable, "gallocy has no `node` subcommand yet"))
struct LeaseClockTests {
    @Test(.timeLimit(.minutes(2)))
    func aMemberWhoseClockIsAheadNeitherStealsNorStretchesALease() async throws {
        var options = Cluster.Options(size: 3, proxied: false)
        options.logLevel = "warning"
        // Member 3's wall clock is ten minutes ahead of the others'.
        options.memberEnvironment = [3: ["GALLOCY_CLOCK_OFFSET_MS": "600000"]]
        let cluster = try Cluster(options)
        defer { cluster.shutdown() }
        try cluster.startAll()
        var leader = try await cluster.waitForLeader()
        if leader == 3 {
            try await cluster.client(3).transferLeadership(to: 1)
            leader = try await cluster.waitForLeader(among: [1, 2])
        }
        let other = leader == 1 ? 2 : 1

        // A lease of a minute, taken through a member with a right clock.
        let epoch = try await cluster.client(other).acquireLock("clock", ttlMilliseconds: 60_000, waitMilliseconds: 0)
        // By member 3's clock that lease ran out nine minutes ago; by the leader's it has not.
        do {
            let stolen = try await cluster.client(3).acquireLock("clock", ttlMilliseconds: 1_000, waitMilliseconds: 0)
            Issue.record("member 3 took the lock at epoch \(stolen) while epoch \(epoch) held it")
        } catch let error as NodeRequestError {
            #expect(error.status == 409, "\(error)")
        }
        try await cluster.client(other).releaseLock("clock", epoch: epoch)

        // A lease of 2 s taken through member 3 ends about 2 s later by the leader's clock (with
        // member 3's time it would have lasted ten minutes more).
        let start = ContinuousClock.now
        let short = try await cluster.client(3).acquireLock("clock", ttlMilliseconds: 2_000, waitMilliseconds: 0)
        let next = try await cluster.client(other).acquireLock("clock", ttlMilliseconds: 1_000, waitMilliseconds: 20_000)
        let waited = start.duration(to: .now)
        #expect(next > short)
        #expect(waited >= .milliseconds(1_500) && waited < .seconds(15), "waited \(waited)")
    }
}
