import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The nemesis against stand-in members (see `ClusterHarnessTests.FakeNode`).
@Suite struct NemesisTests {
    @Test func injectsFaultsKeepsAMajorityUpAndRepairsEverything() async throws {
        let fake = try ClusterHarnessTests.FakeNode()
        let cluster = try Cluster(fake.options(size: 5))
        defer { cluster.shutdown() }
        try cluster.startAll()
        var nemesis = Nemesis()
        nemesis.interval = .milliseconds(20)
        nemesis.healChance = 0.2
        nemesis.seed = 7
        let mostDown = Atomic<Int>(0)
        let done = Atomic<Bool>(false)
        async let watcher: Void = {
            // Samples how many members are down while the nemesis runs; bounded by `done` and a count.
            for _ in 0..<20_000 where !done.load(ordering: .relaxed) {
                let down = cluster.ids.count - cluster.liveIDs.count
                mostDown.max(down, ordering: .relaxed)
                try? await Task.sleep(for: .milliseconds(5))
            }
        }()
        // A fixed number of steps, so the seeded schedule is the same however loaded the machine is.
        let log = await nemesis.run(on: cluster, for: .seconds(60), steps: 60)
        done.store(true, ordering: .relaxed)
        await watcher

        #expect(log.contains { $0.contains("kill -9 member") }, "\(log)")
        #expect(log.contains { $0.contains("SIGSTOP member") })
        #expect(log.contains { $0.contains("partition") })
        #expect(log.contains { $0.contains("isolate member") })
        #expect(log.last?.contains("repair") == true)
        #expect(!log.contains { $0.contains("ended by itself") })
        // A majority of five stayed up throughout, and something was down at some point.
        #expect(mostDown.load(ordering: .relaxed) <= 2)
        #expect(mostDown.load(ordering: .relaxed) >= 1)
        // Everything is back: all members run, none paused, no link cut.
        #expect(cluster.liveIDs == [1, 2, 3, 4, 5])
        for a in cluster.ids {
            for b in cluster.ids where a != b { #expect(cluster.proxy(from: a, to: b)?.isCut == false) }
        }
    }

    @Test func memberThatEndsByItselfIsReportedNotRestarted() async throws {
        let fake = try ClusterHarnessTests.FakeNode()
        let cluster = try Cluster(fake.options(size: 3, proxied: false))
        defer { cluster.shutdown() }
        try cluster.startAll()
        // A "crash": the process dies without the nemesis doing it.
        let pid = try #require(cluster.pid(3))
        kill(pid, SIGKILL)
        try eventuallySync("member 3 gone") { !cluster.isRunning(3) }
        var nemesis = Nemesis()
        nemesis.faults = [.pause]
        nemesis.interval = .milliseconds(20)
        let log = await nemesis.run(on: cluster, for: .milliseconds(300))
        #expect(log.contains { $0.contains("member 3 ended by itself: killed by signal 9") }, "\(log)")
        #expect(!cluster.isRunning(3))
        #expect(cluster.liveIDs == [1, 2])
        // With member 3 down, the limit of one down member left no room for pauses.
        #expect(!log.contains { $0.contains("SIGSTOP") })
    }
}
