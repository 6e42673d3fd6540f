import Testing

/// Membership and leadership through the HTTP API: a member started with `--join` is added as a
/// learner, catches up, becomes a voter; leadership moves on request; a member is removed.
@Suite(.serialized, .enabled(if: Cluster.nodeCommandAvailable, "gallocy has no `node` subcommand yet"))
struct NodeMembershipTests {
    @Test(.timeLimit(.minutes(3)))
    func joiningMemberCatchesUpAndVotesThenLeadershipMovesAndItIsRemoved() async throws {
        try await Cluster.run { cluster in
            let leader = try await cluster.waitForLeader(timeout: .seconds(30))
            let block = try await cluster.client(leader).alloc(size: 64)
            _ = try await cluster.client(leader).put(block, Array("joined!!".utf8))

            let newID = try cluster.addJoiningMember()
            try cluster.start(newID)
            // Through a follower: it forwards the change to the leader.
            let follower = cluster.ids.first { $0 != leader && $0 != newID } ?? leader
            try await cluster.client(follower).addMember(id: newID, peer: cluster.peerAddressForMembership(newID))
            try await eventually("member \(newID) is a voter everywhere", timeout: .seconds(30)) {
                for id in cluster.ids {
                    guard try await cluster.client(id).status().memberIDs == [1, 2, 3, 4] else { return false }
                }
                return try await cluster.client(newID).status().role == "follower"
            }
            #expect(try await cluster.client(newID).get(block, length: 8) == Array("joined!!".utf8))

            try await cluster.client(leader).transferLeadership(to: newID)
            #expect(try await cluster.client(newID).status().isLeader)
            _ = try await cluster.client(newID).put(block, Array("4 leads!".utf8))

            try await cluster.client(newID).transferLeadership(to: leader)
            try await cluster.client(leader).removeMember(id: newID)
            try await eventually("member \(newID) is gone from the membership", timeout: .seconds(20)) {
                try await cluster.client(leader).status().memberIDs == [1, 2, 3]
            }
            #expect(try await cluster.client(leader).get(block, length: 8) == Array("4 leads!".utf8))
        }
    }
}

/// A concurrent register history (reads, writes, compare-and-swaps on random members) while a
/// nemesis kills, pauses and partitions members, checked for linearizability (Wing–Gong).
@Suite(.serialized, .enabled(if: Cluster.nodeCommandAvailable, "gallocy has no `node` subcommand yet"))
struct NodeLinearizabilityTests {
    @Test(.timeLimit(.minutes(4)), arguments: [UInt64(7)])
    func registerHistoryUnderFaultsIsLinearizable(seed: UInt64) async throws {
        try await Cluster.run { cluster in
            let leader = try await cluster.waitForLeader(timeout: .seconds(30))
            let block = try await cluster.client(leader).alloc(size: 64)
            var workload = RegisterWorkload(addresses: [block, block + 8])
            workload.clients = 4
            workload.operationsPerClient = 60
            workload.duration = .seconds(25)
            workload.seed = seed
            var nemesis = Nemesis()
            nemesis.seed = seed
            nemesis.interval = .seconds(2)
            async let faults = nemesis.run(on: cluster, for: .seconds(20))
            let history = await workload.run(on: cluster)
            let log = await faults
            let report = LinearizabilityChecker.checkRegisters(history, initial: UInt64(0))
            try #require(report.verdict.isLinearizable, "\(report)\nnemesis:\n\(log.joined(separator: "\n"))")
            let succeeded = history.filter { if case .ok = $0.outcome { true } else { false } }.count
            #expect(succeeded > 0, "no operation succeeded under faults")
        }
    }
}
