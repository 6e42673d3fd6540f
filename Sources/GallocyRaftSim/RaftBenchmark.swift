import GallocyRaft

/// Throughput of the core alone: a cluster on a perfect network with instant storage, a client
/// that keeps the leader busy with proposals, measured in committed proposals per second of
/// wall-clock time and messages per committed entry.
public enum RaftBenchmark {
    public struct Result: Sendable {
        public var proposals: Int
        public var seconds: Double
        public var messages: Int
        public var readies: Int

        public var perSecond: Double { Double(proposals) / seconds }
        public var messagesPerEntry: Double { Double(messages) / Double(proposals) }

        public var summary: String {
            let rate = Int(perSecond)
            let mpe = (messagesPerEntry * 1000).rounded() / 1000
            return "committed \(proposals) proposals in \(seconds)s: \(rate) proposals/s, \(mpe) messages per committed entry (\(messages) messages, \(readies) Ready batches on the leader)"
        }
    }

    /// Wall-clock time is read here, in the harness: the core itself has no clock.
    public static func run(proposals: Int, members: Int = 3, batch: Int = 64) -> Result {
        let voters = (1...UInt64(members)).map { $0 }
        var storages: [MemoryStorage] = []
        var nodes: [RaftNode] = []
        for id in voters {
            let storage = MemoryStorage(confState: ConfState(voters: voters))
            storages.append(storage)
            nodes.append(
                RaftNode(
                    config: RaftConfig(id: id, maxSizePerMsg: 256 << 10, maxInflightMsgs: 64, seed: 1),
                    storage: storage))
        }
        var queue: [Message] = []
        var messages = 0
        var leaderReadies = 0
        var applied = 0

        func pump() {
            var progress = true
            while progress {
                progress = false
                for (i, node) in nodes.enumerated() where node.hasReady {
                    progress = true
                    let rd = node.ready()
                    if node.role == .leader { leaderReadies += 1 }
                    storages[i].append(rd.entries)
                    if let hs = rd.hardState { storages[i].setHardState(hs) }
                    if i == 0 { applied += rd.committedEntries.filter { !$0.data.isEmpty }.count }
                    queue += rd.messages
                    messages += rd.messages.count
                    node.advance()
                }
                if !queue.isEmpty {
                    progress = true
                    let batch = queue
                    queue = []
                    for m in batch { nodes[Int(m.to) - 1].step(m) }
                }
            }
        }

        nodes[0].campaign()
        pump()
        precondition(nodes[0].role == .leader, "benchmark: member 1 did not win its election")
        messages = 0
        leaderReadies = 0
        applied = 0
        let payload = [UInt8](repeating: 0xAB, count: 64)
        let clock = ContinuousClock()
        let start = clock.now
        var sent = 0
        while applied < proposals {
            if sent < proposals {
                let n = min(batch, proposals - sent)
                for _ in 0..<n { _ = try? nodes[0].propose(payload) }
                sent += n
            }
            pump()
        }
        let elapsed = start.duration(to: clock.now).components
        let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        return Result(proposals: applied, seconds: seconds, messages: messages, readies: leaderReadies)
    }
}
