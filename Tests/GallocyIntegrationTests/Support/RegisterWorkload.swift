/// A Jepsen-style register workload for the linearizability tests: several clients read, write
/// and compare-and-swap 8-byte words on random members, and every operation goes into a history
/// with its invocation, response and outcome (`NodeClient.outcome(of:)`).
///
/// Every write and CAS installs a value no other operation installs (client and sequence number in
/// the word), which keeps the checker's search small: a read then names the write it saw, and an
/// unknown write that nobody saw is dropped before the search (`RegisterModel.simplify`).
struct RegisterWorkload: Sendable {
    typealias Recorder = HistoryRecorder<UInt64, RegisterCall<UInt64>, RegisterReturn<UInt64>>

    /// The words to operate on (8-aligned addresses in allocated memory, zero at the start).
    var addresses: [UInt64]
    var clients = 4
    var operationsPerClient = 100
    /// No operation starts after this much time since the start.
    var duration: Duration = .seconds(60)
    /// The client's limit per request; the contract's nodes answer within 10 s.
    var requestTimeout: Duration = .seconds(12)
    /// Percentages of reads and writes; the rest are CAS.
    var readPercent = 40
    var writePercent = 30
    var seed: UInt64 = 1

    init(addresses: [UInt64]) { self.addresses = addresses }

    /// Runs the clients against the members `members()` returns at each operation (default: all
    /// members, dead ones included, whose refusals are failed operations). Returns the history.
    func run(on cluster: Cluster, members: (@Sendable () -> [Int])? = nil) async -> [RegisterOperation<UInt64>] {
        precondition(!addresses.isEmpty, "a workload needs addresses")
        let recorder = Recorder()
        let deadline = ContinuousClock.now.advanced(by: duration)
        let choose = members ?? { cluster.ids }
        await withTaskGroup(of: Void.self) { group in
            for client in 0..<clients {
                group.addTask {
                    await runClient(client, cluster: cluster, recorder: recorder, deadline: deadline, members: choose)
                }
            }
        }
        return recorder.operations
    }

    private func runClient(
        _ client: Int, cluster: Cluster, recorder: Recorder, deadline: ContinuousClock.Instant,
        members: @Sendable () -> [Int]
    ) async {
        var random = SplitMix64(seed: seed &* 1_000_003 &+ UInt64(client))
        var lastSeen: [UInt64: UInt64] = [:]
        for sequence in 0..<operationsPerClient {
            guard ContinuousClock.now < deadline, !Task.isCancelled else { return }
            let candidates = members()
            guard let member = candidates.randomElement(using: &random) else { return }
            let node = cluster.client(member, timeout: requestTimeout)
            let address = addresses.randomElement(using: &random) ?? addresses[0]
            let unique = UInt64(client + 1) << 32 | UInt64(sequence + 1)
            let roll = Int.random(in: 0..<100, using: &random)
            if roll < readPercent {
                let result = await recorder.record(client: client, key: address, input: .read) {
                    try await node.getWord(address)
                } classify: {
                    NodeClient.outcome(of: $0) { RegisterReturn<UInt64>.value($0) }
                }
                if case .success(let value) = result { lastSeen[address] = value }
            } else if roll < readPercent + writePercent {
                await recorder.record(client: client, key: address, input: .write(unique)) {
                    try await node.putWord(address, unique)
                } classify: {
                    NodeClient.outcome(of: $0) { _ in RegisterReturn<UInt64>.written }
                }
            } else {
                let expect = lastSeen[address] ?? 0
                let result = await recorder.record(
                    client: client, key: address, input: .cas(expect: expect, new: unique)
                ) {
                    try await node.compareAndSwap(address, expect: expect, value: unique)
                } classify: {
                    NodeClient.outcome(of: $0) { RegisterReturn<UInt64>.atomic(ok: $0.ok, old: $0.old) }
                }
                if case .success(let answer) = result { lastSeen[address] = answer.ok ? unique : answer.old }
            }
        }
    }
}
