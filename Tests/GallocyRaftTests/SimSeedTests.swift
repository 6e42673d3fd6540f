import GallocyRaft
import GallocyRaftSim
import Testing

@Suite struct SimSeedTests {
    @Test func smoke() throws {
        var o = SimOptions(seed: 1, members: 3)
        o.trace = true
        let sim = Simulator(options: o)
        do {
            try sim.runRandom()
        } catch {
            print(error)
            for l in error.trace { print(l) }
            Issue.record("\(error)")
        }
        print("acked \(sim.acknowledged.count) proposed \(sim.proposed.count) elections \(sim.elections) msgs \(sim.messagesSent) reads \(sim.readsServed)")
    }
}
