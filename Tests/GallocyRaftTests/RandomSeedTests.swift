import GallocyRaftSim
import Testing

/// Random fault schedules: each seed draws its own fault rates (see `SimOptions.varied`).
/// A failure names the seed; `gallocy sim --start-seed SEED --seeds 1 --members K` replays it.
@Suite struct RandomSeedTests {
    static let groups: [(members: Int, membership: Bool, seeds: ClosedRange<UInt64>)] = [
        (3, false, 1...150), (5, false, 1001...1100), (5, true, 2001...2050),
    ]

    @Test(arguments: 0..<3)
    func randomSeedsKeepRaftSafe(group: Int) {
        let g = Self.groups[group]
        for seed in g.seeds {
            var options = SimOptions.varied(seed: seed, members: g.members)
            options.steps = 600
            if g.membership {
                options.membershipRate = 0.01
                options.spares = 2
            }
            if let violation = Simulator.runSeed(options) {
                let trace = violation.trace.joined(separator: "\n")
                Issue.record("\(violation)\n\(trace)")
                return
            }
        }
    }
}

@Suite struct DeterminismTests {
    @Test func aSeedReplaysExactly() throws {
        func run() throws -> (Int, Set<UInt64>, [[UInt64]], Int) {
            var options = SimOptions.varied(seed: 4242, members: 5)
            options.steps = 500
            options.membershipRate = 0.01
            options.spares = 1
            let sim = Simulator(options: options)
            try sim.runRandom()
            return (sim.messagesSent, sim.acknowledged, sim.nodes.map(\.applied), sim.elections)
        }
        let a = try run()
        let b = try run()
        #expect(a.0 == b.0 && a.1 == b.1 && a.2 == b.2 && a.3 == b.3)
    }
}
