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
