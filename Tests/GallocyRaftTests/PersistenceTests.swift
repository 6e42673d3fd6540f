import GallocyRaft
import GallocyRaftSim
import Testing

@Suite struct PersistenceTests {
    @Test func restartOfAllMembersKeepsCommittedEntries() {
        let sim = quietCluster(3)
        checked {
            let before = try sim.commit(5)
            #expect(try sim.awaitApplied(before))
            for n in sim.nodes { sim.crash(n.id) }
            for n in sim.nodes { try sim.restart(n.id) }
            let after = try sim.commit(5)
            #expect(try sim.awaitApplied(before + after))
            for n in sim.nodes { #expect(n.applied == before + after) }
        }
    }

    @Test func restartOfTheLeader() {
        let sim = quietCluster(3)
        checked {
            let before = try sim.commit(5)
            let l = sim.leaderID!
            sim.crash(l)
            let after = try sim.commit(5)
            try sim.restart(l)
            #expect(try sim.awaitApplied(before + after))
            #expect(sim.node(l).applied == before + after)
        }
    }

    @Test func restartOfMinoritiesAndMajorities() {
        let sim = quietCluster(5)
        checked {
            var all = try sim.commit(3)
            // A minority down: commits go on.
            let minority = sim.followers.prefix(2)
            for id in minority { sim.crash(id) }
            all += try sim.commit(3)
            for id in minority { try sim.restart(id) }
            #expect(try sim.awaitApplied(all))
            // A majority down: nothing commits until they return from their own disks.
            let l = sim.leaderID!
            let majority = sim.followers.prefix(3)
            for id in majority { sim.crash(id) }
            let pending = sim.propose(at: l)!
            try sim.run(steps: 50)
            #expect(!sim.acknowledged.contains(pending))
            for id in majority { try sim.restart(id) }
            all += try sim.commit(3)
            try sim.settle()
            #expect(sim.node(l).applied.starts(with: all.prefix(6)))
        }
    }

    @Test func crashesLoseOnlyWhatWasNotDurable() {
        // Slow disks: writes complete steps later, and crashes lose them.
        let sim = quietCluster(3) {
            $0.slowDiskRate = 0.7
            $0.maxDelay = 2
        }
        var rng = SplitMix64(seed: 3)
        checked {
            for _ in 0..<40 {
                if let l = sim.leaderID { for _ in 0..<3 { sim.propose(at: l) } }
                try sim.run(steps: Int(rng.next() % 8))
                let victim = NodeID(rng.next() % 3 + 1)
                sim.crash(victim)
                try sim.run(steps: Int(rng.next() % 8))
                try sim.restart(victim)
            }
            try sim.settle()
            #expect(sim.acknowledged.count > 20)
        }
    }

    @Test func persistenceFailureMakesTheLeaderStepDown() {
        let sim = quietCluster(3)
        checked {
            guard let l = try sim.awaitLeader() else { return }
            let raft = sim.node(l).raft!
            try raft.propose([1, 2, 3])
            #expect(raft.hasReady)
            let rd = raft.ready()
            #expect(!rd.entries.isEmpty)
            raft.reportPersistFailure()
            #expect(raft.role == .follower, "a leader that cannot write steps down")
            // The entries were not lost from memory: they are handed out again.
            #expect(raft.hasReady)
            #expect(try sim.awaitLeader() != nil)
            try sim.commit(2)
        }
    }

    /// The paper's Figure 8: leaders crash right after proposing; an entry from an earlier term
    /// must never be committed by counting replicas alone.
    @Test(arguments: [false, true])
    func figure8CrashingLeaders(unreliable: Bool) {
        let sim = quietCluster(5, seed: unreliable ? 88 : 8) {
            if unreliable {
                $0.dropRate = 0.1
                $0.duplicateRate = 0.05
                $0.maxDelay = 3
                $0.slowDiskRate = 0.3
            }
        }
        var rng = SplitMix64(seed: unreliable ? 2 : 1)
        checked {
            var up = 5
            for _ in 0..<1000 {
                if let l = sim.leaderID { sim.propose(at: l) }
                try sim.run(steps: rng.next() % 10 == 0 ? Int(rng.next() % 50) : Int(rng.next() % 5))
                if let l = sim.leaderID {
                    sim.crash(l)
                    up -= 1
                }
                if up < 3 {
                    let down = sim.nodes.filter { !$0.isUp }
                    try sim.restart(down[Int(rng.next() % UInt64(down.count))].id)
                    up += 1
                }
            }
            try sim.settle()
            #expect(sim.elections > 100)
        }
    }

    @Test func churn() {
        var options = SimOptions(seed: 99, members: 5)
        options.crashRate = 0.05
        options.restartRate = 0.2
        options.maxCrashed = 5
        options.partitionRate = 0.02
        options.proposeRate = 0.8
        options.steps = 2000
        let sim = Simulator(options: options)
        checked {
            try sim.runRandom()
            #expect(sim.acknowledged.count > 100)
        }
    }
}
