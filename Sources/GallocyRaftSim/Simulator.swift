import GallocyRaft

/// A deterministic cluster of Raft cores in one process: a seeded network that drops,
/// duplicates, delays, reorders and partitions; crashes that lose what was not durable; clients
/// that propose and read. After every step it checks Raft's safety properties and throws a
/// `SimViolation` naming the seed. The same options replay the same run exactly.
public final class Simulator {
    public let options: SimOptions
    public private(set) var nodes: [SimNode] = []
    public private(set) var step = 0
    var rng: SplitMix64

    struct InFlight {
        var deliverAt: Int
        var seq: Int
        var message: Message
    }
    var network: [InFlight] = []
    var seqCounter = 0
    /// Partition group of each member (index = id - 1); messages cross no group boundary.
    var group: [Int]
    /// Members cut off individually by a scenario.
    var isolated: Set<NodeID> = []

    // Fault injection and client switches (scenarios turn them off and drive by hand).
    public var faultsEnabled = true
    /// A scenario's own network rule: it may rewrite a message, and returns false to drop it.
    public var networkFilter: ((inout Message) -> Bool)?
    public var clientsEnabled = true

    // Client bookkeeping.
    var nextProposal: UInt64 = 1
    public private(set) var proposed: Set<UInt64> = []
    /// Proposals whose entry some member applied: the client was told "done".
    public private(set) var acknowledged: Set<UInt64> = []
    var nextRead: UInt64 = 1
    /// Read context -> the highest commit index any member knew when the read was issued.
    var readFloor: [UInt64: UInt64] = [:]
    public private(set) var readsServed = 0
    /// Read context -> the index it was served at.
    public private(set) var servedReads: [UInt64: UInt64] = [:]

    // Global knowledge for the checks.
    var leaderOfTerm: [UInt64: NodeID] = [:]
    /// Term of each committed index, as first seen on any member.
    var committedTerms: [UInt64] = [0]
    /// The entry applied at each index, as first applied by any member.
    var appliedEntries: [UInt64: Entry] = [:]
    public private(set) var maxCommitted: UInt64 = 0

    // Counters.
    public private(set) var messagesSent = 0
    public private(set) var messagesByType: [MessageType: Int] = [:]
    public private(set) var entriesSentInAppends = 0
    public private(set) var elections = 0
    public private(set) var rejectedAppends = 0

    var traceLines: [String] = []

    public init(options: SimOptions) {
        self.options = options
        rng = SplitMix64(seed: options.seed)
        let voters = (1...UInt64(options.members)).map { $0 }
        let total = options.members + options.spares
        group = Array(repeating: 0, count: total)
        for i in 1...UInt64(total) {
            // Spares start outside the configuration: they learn it from the log.
            let node = SimNode(id: i, confState: i <= UInt64(options.members) ? ConfState(voters: voters) : ConfState())
            nodes.append(node)
            start(node)
        }
    }

    // MARK: - Randomness

    func chance(_ p: Double) -> Bool {
        guard p > 0 else { return false }
        return Double(rng.next() >> 11) / Double(1 << 53) < p
    }

    func random(_ n: Int) -> Int { Int(rng.next() % UInt64(max(1, n))) }

    func trace(_ line: @autoclosure () -> String) {
        guard options.trace else { return }
        traceLines.append("[\(step)] " + line())
        if traceLines.count > 20000 { traceLines.removeFirst(5000) }
    }

    func violation(_ message: String) -> SimViolation {
        SimViolation(seed: options.seed, step: step, message: message, trace: Array(traceLines.suffix(options.traceLength)))
    }

    // MARK: - Members

    public func node(_ id: NodeID) -> SimNode { nodes[Int(id) - 1] }

    func start(_ node: SimNode) {
        let config = RaftConfig(
            id: node.id, electionTick: options.electionTick, heartbeatTick: options.heartbeatTick,
            maxSizePerMsg: options.maxSizePerMsg, maxInflightMsgs: options.maxInflightMsgs,
            maxInflightBytes: options.maxInflightBytes, preVote: options.preVote, checkQuorum: options.checkQuorum,
            snapshotChunkSize: options.snapshotChunkSize,
            seed: options.seed &+ UInt64(node.restarts) &* 0x1000_0001)
        let snapshot = node.storage.snapshot()
        node.applied = SimNode.decodeState(snapshot.data)
        node.appliedIndex = snapshot.metadata.index
        node.appliedSinceSnapshot = 0
        node.pendingReady = nil
        let raft = RaftNode(config: config, storage: node.storage)
        node.raft = raft
        node.lastCommitted = raft.committed
    }

    public func crash(_ id: NodeID) {
        let n = node(id)
        guard n.isUp else { return }
        trace("crash \(id)\(n.pendingReady != nil ? " (losing an unfinished write)" : "")")
        n.raft = nil
        n.pendingReady = nil
    }

    public func restart(_ id: NodeID) throws(SimViolation) {
        let n = node(id)
        guard !n.isUp else { return }
        n.restarts += 1
        let before = n.storage.hardState.commit
        start(n)
        trace("restart \(id) term \(n.raft!.term) commit \(n.raft!.committed)")
        if n.raft!.committed < before {
            throw violation("member \(id) restarted with commit \(n.raft!.committed) below its durable \(before)")
        }
    }

    public var upCount: Int { nodes.filter(\.isUp).count }

    // MARK: - Network control

    public func isolate(_ id: NodeID) {
        isolated.insert(id)
        trace("isolate \(id)")
    }

    public var isolatedMembers: Set<NodeID> { isolated }

    public func reconnect(_ id: NodeID) {
        isolated.remove(id)
        trace("reconnect \(id)")
    }

    /// Splits the members into groups that cannot talk to each other.
    public func partition(_ groups: [[NodeID]]) {
        for (g, members) in groups.enumerated() { for id in members { group[Int(id) - 1] = g + 1 } }
        trace("partition \(groups)")
    }

    public func heal() {
        for i in group.indices { group[i] = 0 }
        isolated.removeAll()
        trace("heal")
    }

    func connected(_ a: NodeID, _ b: NodeID) -> Bool {
        !isolated.contains(a) && !isolated.contains(b) && group[Int(a) - 1] == group[Int(b) - 1]
    }

    func send(_ message: Message, unreliable: Bool) {
        var m = message
        messagesSent += 1
        messagesByType[m.type, default: 0] += 1
        if m.type == .append { entriesSentInAppends += m.entries.count }
        if m.type == .appendResponse && m.reject { rejectedAppends += 1 }
        guard Int(m.to) >= 1 && Int(m.to) <= nodes.count else { return }
        if let networkFilter, !networkFilter(&m) { return }
        // Once the faults stop (settling), the network stays lossy but no worse than 5%.
        let drop = faultsEnabled ? options.dropRate : min(options.dropRate, 0.05)
        if unreliable && chance(drop) { return }
        let delay = options.maxDelay > 0 ? random(options.maxDelay + 1) : 0
        seqCounter += 1
        network.append(InFlight(deliverAt: step + delay, seq: seqCounter, message: m))
        if unreliable && chance(options.duplicateRate) {
            seqCounter += 1
            network.append(InFlight(deliverAt: step + random(options.maxDelay + 2), seq: seqCounter, message: m))
        }
    }

    func deliverDue() throws(SimViolation) {
        var due: [InFlight] = []
        var rest: [InFlight] = []
        for f in network { if f.deliverAt <= step { due.append(f) } else { rest.append(f) } }
        network = rest
        guard !due.isEmpty else { return }
        // Same-tick messages arrive in a random order.
        if options.maxDelay > 0 {
            for i in stride(from: due.count - 1, to: 0, by: -1) { due.swapAt(i, random(i + 1)) }
        }
        for f in due {
            let m = f.message
            guard connected(m.from, m.to), let raft = node(m.to).raft else { continue }
            trace("deliver \(describe(m))")
            raft.step(m)
        }
    }

    // MARK: - Clients

    public var leaderID: NodeID? {
        var best: (term: UInt64, id: NodeID)?
        for n in nodes {
            guard let r = n.raft, r.role == .leader else { continue }
            if best == nil || r.term > best!.term { best = (r.term, n.id) }
        }
        return best?.id
    }

    /// Proposes a fresh value at member `id` (or a random running member); returns its id.
    @discardableResult
    public func propose(at id: NodeID? = nil) -> UInt64? {
        let up = nodes.filter(\.isUp)
        guard !up.isEmpty else { return nil }
        let target = id.map { node($0) } ?? up[random(up.count)]
        guard let raft = target.raft else { return nil }
        let value = nextProposal
        nextProposal += 1
        do {
            try raft.propose(SimNode.bytes(value))
            proposed.insert(value)
            trace("propose \(value) at \(target.id)")
            return value
        } catch {
            return nil
        }
    }

    /// Asks member `id` for a linearizable read; returns its context id.
    @discardableResult
    public func read(at id: NodeID? = nil) -> UInt64? {
        let up = nodes.filter(\.isUp)
        guard !up.isEmpty else { return nil }
        let target = id.map { node($0) } ?? up[random(up.count)]
        guard let raft = target.raft else { return nil }
        let context = nextRead
        nextRead += 1
        do {
            try raft.readIndex(context: SimNode.bytes(context))
            readFloor[context] = maxCommitted
            trace("read \(context) at \(target.id) (floor \(maxCommitted))")
            return context
        } catch {
            return nil
        }
    }

    // MARK: - Running

    /// One step: faults, a tick on every running member, client requests, message delivery and
    /// the members' Ready processing, then the safety checks.
    public func runStep() throws(SimViolation) {
        step += 1
        if faultsEnabled { try injectFaults() }
        for n in nodes { n.raft?.tick() }
        if clientsEnabled {
            if chance(options.proposeRate) { propose() }
            if chance(options.readRate) { read() }
        }
        for _ in 0..<3 {
            try processReadies()
            try deliverDue()
        }
        try processReadies()
        try check()
    }

    public func run(steps: Int) throws(SimViolation) {
        for _ in 0..<steps { try runStep() }
    }

    /// Runs until `condition` holds (checked after each step); false if `maxSteps` pass first.
    @discardableResult
    public func run(until condition: (Simulator) -> Bool, maxSteps: Int) throws(SimViolation) -> Bool {
        for _ in 0..<maxSteps {
            if condition(self) { return true }
            try runStep()
        }
        return condition(self)
    }

    func injectFaults() throws(SimViolation) {
        if chance(options.partitionRate) {
            let total = nodes.count
            var groups: [[NodeID]] = [[], []]
            for n in nodes { groups[random(2)].append(n.id) }
            for i in 0..<total { group[i] = 0 }
            partition(groups)
        }
        if chance(options.healRate) && group.contains(where: { $0 != 0 }) { heal() }
        let crashed = nodes.filter { !$0.isUp }.count
        if chance(options.crashRate) && crashed < options.maxCrashed {
            let up = nodes.filter(\.isUp)
            if !up.isEmpty { crash(up[random(up.count)].id) }
        }
        if chance(options.restartRate) {
            let down = nodes.filter { !$0.isUp }
            if !down.isEmpty { try restart(down[random(down.count)].id) }
        }
        if chance(options.transferRate), let l = leaderID {
            let target = NodeID(random(nodes.count) + 1)
            trace("transfer \(l) -> \(target)")
            try? node(l).raft?.transferLeader(to: target)
        }
        if chance(options.membershipRate) { changeMembership() }
    }

    func changeMembership() {
        guard let l = leaderID, let raft = node(l).raft else { return }
        let conf = raft.confState
        let all = nodes.map(\.id)
        let outside = all.filter { !conf.voters.contains($0) && !conf.learners.contains($0) }
        var change: ConfChange?
        switch random(3) {
        case 0: if let n = outside.first { change = ConfChange(.addLearner, node: n) }
        case 1: if let n = conf.learners.first { change = ConfChange(.addVoter, node: n) }
        default:
            // Keep at least three voters so that the cluster stays live with one crash.
            if conf.voters.count > 3 { change = ConfChange(.remove, node: conf.voters[random(conf.voters.count)]) }
        }
        guard let change else { return }
        do {
            try raft.proposeConfChange(change)
            trace("conf change \(change.kind) \(change.node) at leader \(l)")
        } catch {}
    }

    func processReadies() throws(SimViolation) {
        for n in nodes {
            guard let raft = n.raft else { continue }
            if let pending = n.pendingReady {
                // The slow write completes now (or later still).
                if chance(0.5) { continue }
                n.pendingReady = nil
                try finish(pending, on: n)
                raft.advance()
            }
            var rounds = 0
            while raft.hasReady && rounds < 4 {
                rounds += 1
                let rd = raft.ready()
                if let s = rd.softState { trace("member \(n.id) now \(s.role) (leader \(s.leader)) term \(raft.term)") }
                // Messages in a Ready may leave before the write: the core holds back the rest.
                for m in rd.messages { send(m, unreliable: true) }
                if rd.needsPersistence && options.slowDiskRate > 0 && chance(options.slowDiskRate) {
                    n.pendingReady = rd
                    break
                }
                try finish(rd, on: n)
                raft.advance()
            }
        }
    }

    /// The durable write of a Ready, then applying it.
    func finish(_ rd: Ready, on n: SimNode) throws(SimViolation) {
        if let snapshot = rd.snapshot {
            n.storage.applySnapshot(snapshot)
            n.applied = SimNode.decodeState(snapshot.data)
            n.appliedIndex = snapshot.metadata.index
            n.appliedSinceSnapshot = 0
            trace("member \(n.id) installs snapshot at \(snapshot.metadata.index)")
        }
        n.storage.append(rd.entries)
        if let hs = rd.hardState {
            let old = n.storage.hardState
            if hs.commit < old.commit {
                throw violation("member \(n.id) persisted commit \(hs.commit) below its durable \(old.commit)")
            }
            if hs.term < old.term || (hs.term == old.term && old.vote != 0 && hs.vote != old.vote) {
                throw violation("member \(n.id) persisted term/vote \(hs.term)/\(hs.vote) over \(old.term)/\(old.vote)")
            }
            n.storage.setHardState(hs)
        }
        for entry in rd.committedEntries {
            guard entry.index == n.appliedIndex + 1 else {
                throw violation("member \(n.id) applies \(entry.index) after \(n.appliedIndex)")
            }
            if let first = appliedEntries[entry.index] {
                if first != entry {
                    throw violation(
                        "state machine safety: member \(n.id) applies \(entry.term)/\(entry.index) \(entry.data) where another applied \(first.term)/\(first.index) \(first.data)"
                    )
                }
            } else {
                appliedEntries[entry.index] = entry
            }
            n.appliedIndex = entry.index
            if entry.kind == .normal && entry.data.count == 8 {
                let value = SimNode.value(entry.data[...])
                n.applied.append(value)
                if !acknowledged.contains(value) {
                    acknowledged.insert(value)
                    trace("ack \(value) (index \(entry.index))")
                }
            }
            n.appliedSinceSnapshot += 1
        }
        for rs in rd.readStates {
            let context = SimNode.value(rs.context[...])
            guard let floor = readFloor[context] else { continue }
            if rs.index < floor {
                throw violation("read \(context) served at \(rs.index), below the commit index \(floor) at its start")
            }
            readsServed += 1
            servedReads[context] = rs.index
            readFloor[context] = nil
        }
        if options.snapshotEvery > 0 && n.appliedSinceSnapshot >= options.snapshotEvery, let raft = n.raft {
            n.storage.createSnapshot(
                index: n.appliedIndex, confState: raft.confState(at: n.appliedIndex),
                data: SimNode.encodeState(n.applied))
            n.appliedSinceSnapshot = 0
            trace("member \(n.id) snapshots at \(n.appliedIndex)")
        }
    }

    // MARK: - Checks

    public func check() throws(SimViolation) {
        for n in nodes {
            guard let raft = n.raft else { continue }
            if raft.committed < n.lastCommitted {
                throw violation("member \(n.id) commit went back from \(n.lastCommitted) to \(raft.committed)")
            }
            n.lastCommitted = raft.committed
            if raft.role == .leader {
                if let other = leaderOfTerm[raft.term], other != n.id {
                    throw violation("two leaders in term \(raft.term): \(other) and \(n.id)")
                }
                if leaderOfTerm[raft.term] == nil {
                    leaderOfTerm[raft.term] = n.id
                    elections += 1
                    // Leader completeness: a new leader holds every committed entry.
                    let from = max(raft.firstIndex, 1)
                    if maxCommitted >= from {
                        for i in from...maxCommitted
                        where Int(i) < committedTerms.count && committedTerms[Int(i)] != 0
                            && raft.term(at: i) != committedTerms[Int(i)]
                        {
                            throw violation(
                                "leader completeness: new leader \(n.id) of term \(raft.term) has term \(raft.term(at: i).map(String.init) ?? "none") at committed index \(i) (committed term \(committedTerms[Int(i)]))"
                            )
                        }
                    }
                }
            }
            // Every committed index has one term, whoever committed it.
            if raft.committed > n.lastRecordedCommit {
                var i = max(raft.firstIndex, n.lastRecordedCommit + 1)
                while i <= raft.committed, let t = raft.term(at: i) {
                    while committedTerms.count <= Int(i) { committedTerms.append(0) }
                    let known = committedTerms[Int(i)]
                    if known == 0 {
                        committedTerms[Int(i)] = t
                    } else if known != t {
                        throw violation("member \(n.id) committed term \(t) at \(i), where term \(known) was committed")
                    }
                    i += 1
                }
                n.lastRecordedCommit = raft.committed
            }
            maxCommitted = max(maxCommitted, raft.committed)
        }
        if step % 25 == 0 { try checkLogMatching() }
    }

    /// Log matching: two logs with the same term at an index agree on everything before it.
    public func checkLogMatching() throws(SimViolation) {
        let up = nodes.compactMap(\.raft)
        for a in 0..<up.count {
            for b in (a + 1)..<up.count {
                let x = up[a]
                let y = up[b]
                let lo = max(x.firstIndex, y.firstIndex)
                var hi = min(x.lastIndex, y.lastIndex)
                while hi >= lo && x.term(at: hi) != y.term(at: hi) { hi -= 1 }
                guard hi >= lo, let ex = x.entries(from: lo, to: hi + 1), let ey = y.entries(from: lo, to: hi + 1) else {
                    continue
                }
                if ex != ey {
                    throw violation("log matching: members \(x.id) and \(y.id) share term at \(hi) but differ before it")
                }
            }
        }
    }

    /// Stops the faults, heals the network, restarts everyone, and waits for the cluster to
    /// agree; then checks that every acknowledged proposal is in every state machine.
    public func settle() throws(SimViolation) {
        faultsEnabled = false
        clientsEnabled = false
        heal()
        for n in nodes where !n.isUp { try restart(n.id) }
        var marker: UInt64?
        var markerTerm: UInt64 = 0
        let converged = try run(
            until: { sim in
                guard let l = sim.leaderID, let raft = sim.node(l).raft else { return false }
                // A proposal to a stale or deposed leader may be lost: retry with each new leader.
                if marker == nil || markerTerm != raft.term {
                    markerTerm = raft.term
                    marker = sim.propose(at: l) ?? marker
                }
                guard let marker, sim.acknowledged.contains(marker) else { return false }
                let members = raft.confState.voters + raft.confState.learners
                return members.allSatisfy { id in
                    let n = sim.node(id)
                    return n.pendingReady == nil && n.appliedIndex == raft.lastIndex && raft.committed == raft.lastIndex
                }
            }, maxSteps: options.settleSteps)
        guard converged else {
            throw violation("liveness: no agreement within \(options.settleSteps) steps after healing: \(status)")
        }
        try checkLogMatching()
        let l = leaderID!
        let members = node(l).raft!.confState.voters + node(l).raft!.confState.learners
        for id in members {
            let state = Set(node(id).applied)
            if let missing = acknowledged.first(where: { !state.contains($0) }) {
                throw violation("acknowledged proposal \(missing) is missing from member \(id)'s state machine")
            }
        }
    }

    /// A whole random run: `steps` steps of faults and clients, then `settle()`.
    public func runRandom() throws(SimViolation) {
        try run(steps: options.steps)
        try settle()
    }

    /// Runs `options`; on a violation, replays the same seed with tracing on, so that the error
    /// carries the event trace.
    public static func runSeed(_ options: SimOptions) -> SimViolation? {
        do {
            try Simulator(options: options).runRandom()
            return nil
        } catch {
            var traced = options
            traced.trace = true
            traced.traceLength = options.traceLength
            do {
                try Simulator(options: traced).runRandom()
                return error
            } catch {
                return error
            }
        }
    }

    /// What the run exercised.
    public var summary: String {
        let count = { (t: MessageType) in self.messagesByType[t] ?? 0 }
        return "\(step) steps, \(elections) leaders, \(acknowledged.count)/\(proposed.count) proposals committed, "
            + "\(readsServed) reads, \(messagesSent) messages (\(count(.snapshot)) snapshot chunks, "
            + "\(count(.timeoutNow)) timeoutNow, \(rejectedAppends) rejected appends), "
            + "\(nodes.map(\.restarts).reduce(0, +)) restarts"
    }

    /// One line per member: role, term, log and apply positions, and the leader's view of it.
    public var status: String {
        let l = leaderID.flatMap { node($0).raft }
        return nodes.map { n -> String in
            guard let r = n.raft else { return "\(n.id): down" }
            var s = "\(n.id): \(r.role) t\(r.term) log \(r.firstIndex)...\(r.lastIndex) commit \(r.committed) applied \(n.appliedIndex)"
            if n.pendingReady != nil { s += " (write pending)" }
            if let p = l?.progress[n.id] { s += " [\(p.state) match \(p.match) next \(p.next)]" }
            return s
        }.joined(separator: "; ")
    }

    func describe(_ m: Message) -> String {
        var s = "\(m.type) \(m.from)->\(m.to) t\(m.term)"
        switch m.type {
        case .append:
            s += " prev \(m.logTerm)/\(m.index) n=\(m.entries.count) commit \(m.commit)"
        case .appendResponse:
            s += m.reject ? " reject \(m.index) hint \(m.hintTerm)/\(m.rejectHint)" : " ok \(m.index)"
        case .vote, .preVote:
            s += " last \(m.logTerm)/\(m.index)"
        case .voteResponse, .preVoteResponse:
            s += m.reject ? " reject" : " grant"
        case .snapshot:
            if let c = m.snapshot { s += " snap \(c.metadata.index) @\(c.offset)/\(c.totalSize)" }
        case .snapshotResponse:
            s += m.reject ? " reject" : " have \(m.rejectHint)"
        case .heartbeat:
            s += " commit \(m.commit)"
        default:
            break
        }
        return s
    }
}
