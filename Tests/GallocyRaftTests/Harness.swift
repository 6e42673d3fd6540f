import GallocyRaft
import GallocyRaftSim
import Testing

/// A cluster on a reliable network with no random faults: scenarios inject their own.
func quietCluster(_ members: Int, seed: UInt64 = 7, _ tweak: (inout SimOptions) -> Void = { _ in }) -> Simulator {
    var options = SimOptions.quiet(seed: seed, members: members)
    tweak(&options)
    let sim = Simulator(options: options)
    sim.faultsEnabled = false
    sim.clientsEnabled = false
    return sim
}

/// Makes a simulator violation a test failure that names the seed and shows the trace.
@discardableResult
func checked<T>(sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> T) -> T? {
    do {
        return try body()
    } catch let violation as SimViolation {
        let trace = violation.trace.joined(separator: "\n")
        Issue.record("\(violation)\n\(trace)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

extension Simulator {
    /// Runs until some member leads (and returns it), or fails after `steps`.
    func awaitLeader(within steps: Int = 300, sourceLocation: SourceLocation = #_sourceLocation) throws(SimViolation)
        -> NodeID?
    {
        let found = try run(until: { $0.leaderID != nil }, maxSteps: steps)
        if !found { Issue.record("no leader within \(steps) steps: \(status)", sourceLocation: sourceLocation) }
        return leaderID
    }

    /// Proposes `count` values at the leader and waits until some member has applied each one.
    @discardableResult
    func commit(_ count: Int, within steps: Int = 500, sourceLocation: SourceLocation = #_sourceLocation)
        throws(SimViolation) -> [UInt64]
    {
        var values: [UInt64] = []
        guard let l = try awaitLeader(sourceLocation: sourceLocation) else { return [] }
        for _ in 0..<count { if let v = propose(at: l) { values.append(v) } }
        let done = try run(until: { sim in values.allSatisfy { sim.acknowledged.contains($0) } }, maxSteps: steps)
        if !done || values.count != count {
            Issue.record("\(count) proposals did not all commit within \(steps) steps: \(status)", sourceLocation: sourceLocation)
        }
        return values
    }

    /// Runs until every running member has applied all of `values`.
    func awaitApplied(_ values: [UInt64], on members: [NodeID]? = nil, within steps: Int = 500) throws(SimViolation)
        -> Bool
    {
        let ids = members ?? nodes.filter(\.isUp).map(\.id)
        return try run(
            until: { sim in ids.allSatisfy { id in let s = Set(sim.node(id).applied); return values.allSatisfy(s.contains) } },
            maxSteps: steps)
    }

    var followers: [NodeID] { nodes.map(\.id).filter { $0 != leaderID } }
}
