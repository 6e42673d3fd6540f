import GallocyRaft
import GallocyRaftSim
import Testing

@Suite struct ElectionTests {
    @Test func initialElectionPicksOneLeaderAndKeepsIt() {
        let sim = quietCluster(3)
        checked {
            guard let l = try sim.awaitLeader(within: 100) else { return }
            let term = sim.node(l).raft!.term
            try sim.run(steps: 200)
            #expect(sim.leaderID == l)
            #expect(sim.node(l).raft!.term == term, "no re-election on a healthy network")
            for n in sim.nodes { #expect(n.raft!.term == term && n.raft!.leader == l) }
        }
    }

    @Test func reElectionAfterLeaderLoss() {
        let sim = quietCluster(3)
        checked {
            guard let first = try sim.awaitLeader() else { return }
            sim.isolate(first)
            let other = try sim.run(until: { s in s.nodes.contains { $0.id != first && $0.raft!.role == .leader } }, maxSteps: 300)
            #expect(other, "the two others elect a new leader")
            // The old leader comes back: it must not disrupt, and follows the new one.
            sim.reconnect(first)
            try sim.run(steps: 100)
            let leaders = sim.nodes.filter { $0.raft!.role == .leader }
            #expect(leaders.count == 1 && leaders[0].id != first)
            // No quorum: no leader.
            let second = leaders[0].id
            let third = sim.nodes.map(\.id).first { $0 != first && $0 != second }!
            sim.isolate(second)
            sim.isolate(third)
            try sim.run(steps: 200)
            #expect(!sim.nodes.contains { $0.id != second && $0.raft!.role == .leader })
            sim.heal()
            #expect(try sim.awaitLeader() != nil)
        }
    }

    @Test func manyElectionsInSevenMembersWithThreeDisconnected() {
        let sim = quietCluster(7)
        var rng = SplitMix64(seed: 42)
        checked {
            _ = try sim.awaitLeader()
            for _ in 0..<10 {
                var ids = sim.nodes.map(\.id)
                for i in stride(from: ids.count - 1, to: 0, by: -1) { ids.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
                let cut = Array(ids.prefix(3))
                for id in cut { sim.isolate(id) }
                let ok = try sim.run(
                    until: { s in s.nodes.contains { !cut.contains($0.id) && $0.raft!.role == .leader } }, maxSteps: 400)
                #expect(ok, "four connected members of seven elect a leader")
                sim.heal()
            }
            #expect(try sim.awaitLeader() != nil)
        }
    }

    @Test func partitionedMemberRejoinsWithoutDisruptingTheLeader() {
        let sim = quietCluster(5)
        checked {
            guard let l = try sim.awaitLeader() else { return }
            let term = sim.node(l).raft!.term
            let loner = sim.followers[0]
            sim.isolate(loner)
            try sim.run(steps: 300)  // many election timeouts: pre-vote keeps its term
            #expect(sim.node(loner).raft!.term == term)
            sim.reconnect(loner)
            try sim.commit(3)
            #expect(sim.leaderID == l)
            #expect(sim.node(l).raft!.term == term, "the rejoining member did not force a new term")
        }
    }

    @Test func checkQuorumLeaderStepsDownWhenCutOff() {
        let sim = quietCluster(3)
        checked {
            guard let l = try sim.awaitLeader() else { return }
            sim.isolate(l)
            let stepped = try sim.run(until: { $0.node(l).raft!.role != .leader }, maxSteps: 100)
            #expect(stepped, "a leader that hears from no quorum steps down")
        }
    }

    @Test func leadershipTransfer() {
        let sim = quietCluster(3)
        checked {
            guard let l = try sim.awaitLeader() else { return }
            try sim.commit(5)
            let target = sim.followers[0]
            let term = sim.node(l).raft!.term
            try sim.node(l).raft!.transferLeader(to: target)
            let moved = try sim.run(until: { $0.leaderID == target }, maxSteps: 50)
            #expect(moved, "the target leads within a few ticks")
            #expect(sim.node(target).raft!.term == term + 1)
            try sim.commit(3)
            // A follower may ask too: the request is forwarded to the leader.
            try sim.node(l).raft!.transferLeader(to: l)
            #expect(try sim.run(until: { $0.leaderID == l }, maxSteps: 50))
        }
    }

    @Test func transferToALaggingMemberCatchesItUpFirst() {
        let sim = quietCluster(3)
        checked {
            guard let l = try sim.awaitLeader() else { return }
            let target = sim.followers[0]
            sim.isolate(target)
            try sim.commit(20)
            sim.reconnect(target)
            try sim.node(l).raft!.transferLeader(to: target)
            #expect(try sim.run(until: { $0.leaderID == target }, maxSteps: 100))
            #expect(Set(sim.node(target).applied).count >= 20 || sim.node(target).raft!.lastIndex >= sim.node(l).raft!.committed)
        }
    }
}
