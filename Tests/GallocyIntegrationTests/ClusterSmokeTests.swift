import Testing

/// First whole-system checks on real `gallocy node` processes, and examples of the harness. They
/// run only once the executable has a `node` subcommand (`Cluster.nodeCommandAvailable`).
@Suite(.enabled(if: Cluster.nodeCommandAvailable, "gallocy has no `node` subcommand yet"))
struct ClusterSmokeTests {
    @Test(.timeLimit(.minutes(2)))
    func threeMembersAgreeOnOneLeader() async throws {
        try await Cluster.run { cluster in
            let leader = try await cluster.waitForLeader(timeout: .seconds(30))
            let poll = await cluster.pollStatus(cluster.ids)
            try #require(poll.errors.isEmpty, "\(poll)")
            #expect(poll.statuses.values.filter(\.isLeader).map(\.id) == [leader])
            for status in poll.statuses.values { #expect(status.memberIDs == [1, 2, 3], "\(status)") }
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func registerHistoryWithoutFaultsIsLinearizable() async throws {
        try await Cluster.run { cluster in
            let leader = try await cluster.waitForLeader(timeout: .seconds(30))
            let block = try await cluster.client(leader).alloc(size: 64)
            var workload = RegisterWorkload(addresses: [block, block + 8, block + 16])
            workload.clients = 3
            workload.operationsPerClient = 40
            let history = await workload.run(on: cluster)
            let report = LinearizabilityChecker.checkRegisters(history, initial: UInt64(0))
            try #require(report.verdict.isLinearizable, "\(report)")
            // Without faults every request should have succeeded.
            #expect(history.allSatisfy { if case .ok = $0.outcome { true } else { false } })
        }
    }
}
