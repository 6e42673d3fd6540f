import GallocyRaft
import GallocyRaftSim
import Testing

@Suite struct MembershipTests {
    func awaitConf(_ sim: Simulator, voters: [NodeID], learners: [NodeID] = [], within steps: Int = 500) throws -> Bool {
        try sim.run(
            until: { s in
                s.nodes.filter { voters.contains($0.id) || learners.contains($0.id) }.allSatisfy {
                    $0.raft?.confState.voters == voters && $0.raft?.confState.learners == learners
                }
            }, maxSteps: steps)
    }

    @Test func learnerCatchesUpThenBecomesAVoter() {
        let sim = quietCluster(3) { $0.spares = 2 }
        checked {
            let values = try sim.commit(20)
            let raft = sim.node(sim.leaderID!).raft!
            #expect(throws: RaftError.self, "a new member must come in as a learner") {
                try raft.proposeConfChange(ConfChange(.addVoter, node: 4))
            }
            try raft.proposeConfChange(ConfChange(.addLearner, node: 4))
            #expect(throws: RaftError.confChangePending, "one change at a time") {
                try raft.proposeConfChange(ConfChange(.addLearner, node: 5))
            }
            #expect(try awaitConf(sim, voters: [1, 2, 3], learners: [4]))
            #expect(try sim.awaitApplied(values, on: [4]), "the learner receives the log (via the bootstrap snapshot)")
            // The learner never campaigns, whatever happens to the leader.
            #expect(sim.node(4).raft!.role == .follower)
            // Promotion once caught up.
            #expect(try sim.run(until: { s in (try? raft.proposeConfChange(ConfChange(.addVoter, node: 4))) != nil }, maxSteps: 100))
            #expect(try awaitConf(sim, voters: [1, 2, 3, 4]))
            let more = try sim.commit(5)
            #expect(try sim.awaitApplied(values + more, on: [1, 2, 3, 4]))
        }
    }

    @Test func aLaggingLearnerIsNotPromoted() {
        let sim = quietCluster(3) { $0.spares = 1 }
        checked {
            try sim.commit(3)
            let raft = sim.node(sim.leaderID!).raft!
            sim.isolate(4)
            try raft.proposeConfChange(ConfChange(.addLearner, node: 4))
            try sim.commit(10)
            #expect(throws: RaftError.learnerNotCaughtUp) { try raft.proposeConfChange(ConfChange(.addVoter, node: 4)) }
            sim.reconnect(4)
            #expect(try sim.run(until: { _ in (try? raft.proposeConfChange(ConfChange(.addVoter, node: 4))) != nil }, maxSteps: 300))
            #expect(try awaitConf(sim, voters: [1, 2, 3, 4]))
        }
    }

    @Test func removingTheLeaderHandsOver() {
        let sim = quietCluster(5)
        checked {
            try sim.commit(3)
            let l = sim.leaderID!
            try sim.node(l).raft!.proposeConfChange(ConfChange(.remove, node: l))
            let rest = sim.nodes.map(\.id).filter { $0 != l }
            #expect(try awaitConf(sim, voters: rest))
            #expect(try sim.run(until: { s in s.leaderID != nil && s.leaderID != l }, maxSteps: 300))
            let more = try sim.commit(3)
            #expect(try sim.awaitApplied(more, on: rest))
            #expect(sim.node(l).raft!.role == .follower)
        }
    }

    @Test func membershipChangesUnderFailures() {
        for seed in UInt64(1)...6 {
            var options = SimOptions.varied(seed: 7000 + seed, members: 5)
            options.membershipRate = 0.03
            options.spares = 2
            options.steps = 800
            let sim = Simulator(options: options)
            checked { try sim.runRandom() }
        }
    }
}

@Suite struct ReadIndexTests {
    @Test func readsAtTheLeaderAndAtFollowers() {
        let sim = quietCluster(3)
        checked {
            try sim.commit(5)
            let l = sim.leaderID!
            let atLeader = sim.read(at: l)!
            let atFollower = sim.read(at: sim.followers[0])!
            let floor = sim.node(l).raft!.committed
            #expect(try sim.run(until: { $0.servedReads[atLeader] != nil && $0.servedReads[atFollower] != nil }, maxSteps: 20))
            #expect(sim.servedReads[atLeader]! >= floor && sim.servedReads[atFollower]! >= floor)
        }
    }

    @Test func aNewLeaderServesReadsOnlyAfterItsNoOpCommits() {
        let sim = quietCluster(3)
        checked {
            try sim.commit(3)
            let old = sim.leaderID!
            sim.networkFilter = { $0.type != .appendResponse }
            sim.crash(old)
            #expect(try sim.run(until: { $0.leaderID != nil }, maxSteps: 300))
            let l = sim.leaderID!
            let context = sim.read(at: l)!
            try sim.run(steps: 30)
            #expect(sim.servedReads[context] == nil, "no read before the no-op of the term commits")
            sim.networkFilter = nil
            #expect(try sim.run(until: { $0.servedReads[context] != nil }, maxSteps: 50))
            #expect(sim.servedReads[context]! >= sim.node(l).raft!.firstIndex)
            #expect(sim.node(l).raft!.term(at: sim.servedReads[context]!) == sim.node(l).raft!.term)
        }
    }

    @Test func aDeposedLeaderServesNoReads() {
        let sim = quietCluster(3) { $0.checkQuorum = false }
        checked {
            try sim.commit(3)
            let old = sim.leaderID!
            sim.isolate(old)
            let context = sim.read(at: old)!
            try sim.run(steps: 100)
            #expect(sim.node(old).raft!.role == .leader, "without check-quorum it still believes it leads")
            #expect(sim.servedReads[context] == nil, "but it cannot confirm that with a quorum")
        }
    }
}
