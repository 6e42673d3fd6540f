import GallocyRaft
import GallocyRaftSim
import Testing

@Suite struct SnapshotTests {
    func catchUpBySnapshot(_ sim: Simulator, crashing: Bool) throws {
        try sim.commit(3)
        let f = sim.followers[0]
        sim.isolate(f)
        var values: [UInt64] = []
        for _ in 0..<6 { values += try sim.commit(20, within: 2000) }
        let l = sim.leaderID!
        #expect(sim.node(l).raft!.firstIndex > sim.node(f).raft!.lastIndex + 1, "the leader compacted past the follower")
        let snapshotsBefore = sim.messagesByType[.snapshot] ?? 0
        sim.reconnect(f)
        if crashing {
            try sim.run(steps: 3)
            sim.crash(f)
            try sim.run(steps: 5)
            try sim.restart(f)
            try sim.run(steps: 3)
            sim.crash(sim.leaderID!)
        }
        #expect(try sim.awaitApplied(values, on: [f], within: 3000))
        #expect((sim.messagesByType[.snapshot] ?? 0) > snapshotsBefore)
        try sim.settle()
        #expect(sim.node(f).applied == sim.node(sim.leaderID!).applied)
    }

    @Test func snapshotInstallOnAReliableNetwork() {
        let sim = quietCluster(3) {
            $0.snapshotEvery = 15
            $0.snapshotChunkSize = 100
        }
        checked { try catchUpBySnapshot(sim, crashing: false) }
    }

    @Test func snapshotInstallOnAnUnreliableNetwork() {
        let sim = quietCluster(3, seed: 11) {
            $0.snapshotEvery = 15
            $0.snapshotChunkSize = 64
            $0.dropRate = 0.15
            $0.duplicateRate = 0.1
            $0.maxDelay = 4
        }
        checked { try catchUpBySnapshot(sim, crashing: false) }
    }

    @Test func snapshotInstallWithCrashes() {
        let sim = quietCluster(5, seed: 12) {
            $0.snapshotEvery = 15
            $0.snapshotChunkSize = 64
            $0.dropRate = 0.05
            $0.maxDelay = 2
            $0.slowDiskRate = 0.3
        }
        checked { try catchUpBySnapshot(sim, crashing: true) }
    }

    @Test func restartFromASnapshotAndItsLogTail() {
        let sim = quietCluster(3) { $0.snapshotEvery = 7 }
        checked {
            let values = try sim.commit(30)
            #expect(try sim.awaitApplied(values))
            for n in sim.nodes { sim.crash(n.id) }
            for n in sim.nodes {
                try sim.restart(n.id)
                #expect(n.raft!.firstIndex > 1, "restarted from a snapshot")
            }
            let more = try sim.commit(3)
            #expect(try sim.awaitApplied(values + more))
        }
    }
}
