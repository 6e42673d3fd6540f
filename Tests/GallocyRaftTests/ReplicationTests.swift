import GallocyRaft
import GallocyRaftSim
import Testing

@Suite struct ReplicationTests {
    @Test func basicAgreement() {
        let sim = quietCluster(3)
        checked {
            for round in 0..<5 {
                let values = try sim.commit(1)
                #expect(try sim.awaitApplied(values), "round \(round): every member applies the value")
            }
            let states = sim.nodes.map(\.applied)
            #expect(states.allSatisfy { $0 == states[0] } && states[0].count == 5)
        }
    }

    @Test func followerFailureDoesNotStopCommits() {
        let sim = quietCluster(3)
        checked {
            try sim.commit(1)
            sim.isolate(sim.followers[0])
            try sim.commit(3)
            sim.isolate(sim.followers.first { !sim.isolatedMembers.contains($0) }!)
            // The leader is alone: nothing commits.
            let l = sim.leaderID!
            let stuck = sim.propose(at: l)!
            try sim.run(steps: 50)
            #expect(!sim.acknowledged.contains(stuck), "no commit without a majority")
            sim.heal()
            #expect(try sim.run(until: { $0.acknowledged.contains(stuck) || $0.leaderID != l }, maxSteps: 300))
        }
    }

    @Test func leaderFailureDoesNotCommitItsLaterProposals() {
        let sim = quietCluster(3)
        checked {
            try sim.commit(2)
            let old = sim.leaderID!
            sim.isolate(old)
            let lost = (0..<3).compactMap { _ in sim.propose(at: old) }
            let ok = try sim.run(until: { s in s.nodes.contains { $0.id != old && $0.raft!.role == .leader } }, maxSteps: 300)
            #expect(ok)
            let kept = try sim.commit(3)
            sim.reconnect(old)
            #expect(try sim.awaitApplied(kept))
            for v in lost { #expect(!sim.acknowledged.contains(v), "an isolated leader's proposals never commit") }
        }
    }

    @Test func noCommitWithThreeOfFiveGone() {
        let sim = quietCluster(5)
        checked {
            try sim.commit(1)
            let l = sim.leaderID!
            for id in sim.followers.prefix(3) { sim.isolate(id) }
            let v = sim.propose(at: l)!
            try sim.run(steps: 100)
            #expect(!sim.acknowledged.contains(v))
            sim.heal()
            try sim.commit(2)
            try sim.settle()
        }
    }

    @Test func reconnectedFollowerCatchesUp() {
        let sim = quietCluster(3)
        checked {
            try sim.commit(1)
            let f = sim.followers[0]
            sim.isolate(f)
            let values = try sim.commit(30)
            #expect(!Set(sim.node(f).applied).isSuperset(of: values))
            sim.reconnect(f)
            #expect(try sim.awaitApplied(values, on: [f]))
        }
    }

    @Test func concurrentProposalsAllCommitOnce() {
        let sim = quietCluster(3)
        checked {
            guard let l = try sim.awaitLeader() else { return }
            // Proposals arrive at every member at once; followers forward theirs.
            var values: [UInt64] = []
            for i in 0..<60 { if let v = sim.propose(at: NodeID(i % 3 + 1)) { values.append(v) } }
            #expect(values.count == 60)
            #expect(try sim.awaitApplied(values))
            let applied = sim.node(l).applied
            #expect(Set(applied).count == applied.count, "each proposal applied once")
        }
    }

    @Test func staleLeadersConflictingEntriesAreOverwritten() {
        let sim = quietCluster(5)
        checked {
            try sim.commit(2)
            let old = sim.leaderID!
            let buddy = sim.followers[0]
            sim.partition([[old, buddy], sim.nodes.map(\.id).filter { $0 != old && $0 != buddy }])
            let lost = (0..<5).compactMap { _ in sim.propose(at: old) }
            try sim.run(steps: 5)
            let ok = try sim.run(
                until: { s in s.nodes.contains { $0.id != old && $0.id != buddy && $0.raft!.role == .leader } },
                maxSteps: 300)
            #expect(ok)
            let kept = try sim.commit(5)
            sim.heal()
            #expect(try sim.awaitApplied(kept))
            try sim.settle()
            for v in lost { #expect(!sim.node(old).applied.contains(v)) }
            #expect(sim.node(old).applied == sim.node(buddy).applied)
        }
    }

    /// The lab's "backup" test: 50 divergent entries must be skipped in a few round trips.
    @Test func fastBackOffOverFiftyDivergentEntries() {
        let sim = quietCluster(5) { $0.maxSizePerMsg = 64 << 10 }
        checked {
            try sim.commit(1)
            let a = sim.leaderID!
            let ids = sim.nodes.map(\.id)
            let b = ids.first { $0 != a }!
            let rest = ids.filter { $0 != a && $0 != b }
            // a and b take 50 entries that never commit.
            sim.partition([[a, b], rest])
            for _ in 0..<50 { sim.propose(at: a) }
            try sim.run(steps: 5)
            #expect(try sim.run(until: { s in rest.contains { s.node($0).raft!.role == .leader } }, maxSteps: 300))
            let c = sim.leaderID!
            try sim.commit(50)
            // Now a member of the majority with the long committed log leads a, b: the leader
            // probes them from its log's end and must skip their 50 divergent entries.
            let e = rest.first { $0 != c }!
            let d = rest.first { $0 != c && $0 != e }!
            let rejectsBefore = sim.rejectedAppends
            sim.partition([[c, d], [a, b, e]])
            #expect(try sim.run(until: { $0.node(e).raft!.role == .leader }, maxSteps: 400))
            let values = (0..<5).compactMap { _ in sim.propose(at: e) }
            #expect(try sim.awaitApplied(values, on: [a, b, e]))
            let rejects = sim.rejectedAppends - rejectsBefore
            #expect(rejects >= 1 && rejects <= 4, "conflict hints skip whole terms: \(rejects) rejections")
            sim.heal()
            try sim.settle()
        }
    }

    @Test func messageCountsStayBounded() {
        let sim = quietCluster(3)
        checked {
            _ = try sim.commit(1)
            try sim.run(steps: 20)
            // Idle: heartbeats and their answers only.
            let idleStart = sim.messagesSent
            try sim.run(steps: 100)
            let idle = sim.messagesSent - idleStart
            let heartbeats = 100 / sim.options.heartbeatTick * 2 * 2
            #expect(idle <= heartbeats + 10, "idle cluster: \(idle) messages in 100 ticks")
            // Busy: each entry goes about once to each follower.
            let entriesStart = sim.entriesSentInAppends
            let values = try sim.commit(200)
            #expect(try sim.awaitApplied(values))
            let sent = sim.entriesSentInAppends - entriesStart
            #expect(sent <= 2 * 200 + 20, "\(sent) entry sends for 200 entries to 2 followers")
        }
    }
}

@Suite struct FlowControlTests {
    @Test func pipelinedAppendsStayWithinTheInflightWindow() {
        let sim = quietCluster(3) {
            $0.maxInflightMsgs = 4
            $0.maxInflightBytes = 1024
            $0.maxSizePerMsg = 256
            $0.maxDelay = 4
        }
        checked {
            guard let l = try sim.awaitLeader() else { return }
            var values: [UInt64] = []
            for _ in 0..<300 { if let v = sim.propose(at: l) { values.append(v) } }
            var sawPipelining = false
            let done = try sim.run(
                until: { s in
                    for (id, pr) in s.node(l).raft!.progress where id != l {
                        #expect(pr.inflightMessages <= 4)
                        #expect(pr.inflightBytes < 1024 + 256)
                        if pr.inflightMessages > 1 { sawPipelining = true }
                    }
                    return values.allSatisfy(s.acknowledged.contains)
                }, maxSteps: 1000)
            #expect(done)
            #expect(sawPipelining, "several appends in flight at once")
        }
    }

    @Test func aFollowerWithoutALeaderRefusesProposals() {
        let sim = quietCluster(3)
        #expect(throws: RaftError.noLeader) { try sim.node(1).raft!.propose([1]) }
    }
}
