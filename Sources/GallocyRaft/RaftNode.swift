/// The Raft core: a deterministic state machine for one member of one group. The host feeds it
/// messages (`step`), time (`tick`) and requests (`propose`, `readIndex`, ...), and drives it
/// with `ready()` / `advance()`. It does no I/O, reads no clock, starts no thread; its only
/// randomness comes from `RaftConfig.seed`. Not thread-safe: drive it from one serial executor.
public final class RaftNode {
    public let id: NodeID
    let config: RaftConfig
    var log: RaftLogView

    public private(set) var term: UInt64 = 0
    public private(set) var vote: NodeID = 0
    public private(set) var role: RaftRole = .follower
    /// The leader of `term` as far as this member knows, or 0.
    public private(set) var leader: NodeID = 0

    /// Per member of the configuration (self included), on the leader.
    public internal(set) var progress: [NodeID: Progress] = [:]
    public private(set) var voters: [NodeID] = []
    public private(set) var learners: [NodeID] = []
    /// Configurations in force from an index on. A member uses the latest one in its log,
    /// committed or not (single-server changes: docs/raft.md); a truncation reverts.
    var confHistory: [(index: UInt64, conf: ConfState)] = []

    var votes: [NodeID: Bool] = [:]
    var electionElapsed = 0
    var heartbeatElapsed = 0
    var randomizedElectionTimeout = 0
    var rng: SplitMix64

    var leadTransferee: NodeID = 0
    /// The index of the latest membership change in the leader's log.
    var pendingConfIndex: UInt64 = 0
    /// The leader has new entries or a new commit index to send: batched until `ready()`.
    var pendingBroadcast = false

    struct PendingRead {
        var context: [UInt8]
        var index: UInt64
        var from: NodeID
        var acks: Set<NodeID>
    }
    var pendingReads: [PendingRead] = []
    /// Reads that arrived before the leader committed an entry of its term.
    var readsAwaitingTermCommit: [(from: NodeID, context: [UInt8])] = []
    var readStates: [ReadState] = []

    /// Messages safe to send at once, and those that wait for the next durable write.
    var msgs: [Message] = []
    var msgsAfterPersist: [Message] = []

    /// A snapshot being received from the leader, chunk by chunk.
    var incomingSnapshot: (metadata: SnapshotMetadata, totalSize: UInt64, data: [UInt8])?

    struct Outstanding {
        var held: [Message]
        var lastEntry: (index: UInt64, term: UInt64)?
        var snapshotIndex: UInt64?
        var lastCommitted: UInt64?
        var hardStateBefore: HardState
    }
    /// The Ready handed out and not yet acknowledged.
    var outstanding: Outstanding?
    var prevHardState: HardState
    var prevSoftState: SoftState

    /// Restarts (or starts) a member from what `storage` holds.
    public init(config: RaftConfig, storage: any RaftLogReader) {
        precondition(config.id != 0, "node id 0 means nobody")
        precondition(config.heartbeatTick > 0 && config.electionTick > config.heartbeatTick, "bad tick settings")
        id = config.id
        self.config = config
        rng = SplitMix64(seed: config.seed ^ (config.id &* 0x9E37_79B9_7F4A_7C15))
        log = RaftLogView(storage: storage)
        let (hardState, confState) = storage.initialState()
        prevHardState = hardState
        prevSoftState = SoftState(role: .follower, leader: 0)

        confHistory = [(log.firstIndex - 1, confState)]
        if log.lastIndex >= log.firstIndex,
            let stored = log.entries(log.firstIndex, log.lastIndex + 1, maxBytes: .max)
        {
            recordConfChanges(in: stored)
        }
        applyConf(confHistory.last!.conf)

        term = hardState.term
        vote = hardState.vote
        // A commit index beyond the log would be a corrupt store; the log bounds it.
        log.committed = min(max(hardState.commit, log.firstIndex - 1), log.lastIndex)
        if config.applied > 0 { log.applied = min(max(config.applied, log.firstIndex - 1), log.committed) }
        prevHardState = HardState(term: term, vote: vote, commit: log.committed)
        becomeFollower(term: term, leader: 0)
        prevSoftState = softState
    }

    // MARK: - Inspection

    public var committed: UInt64 { log.committed }
    public var applied: UInt64 { log.applied }
    public var firstIndex: UInt64 { log.firstIndex }
    public var lastIndex: UInt64 { log.lastIndex }
    public var hardState: HardState { HardState(term: term, vote: vote, commit: log.committed) }
    public var softState: SoftState { SoftState(role: role, leader: leader) }
    /// The membership in force (the latest in the log).
    public var confState: ConfState { confHistory.last!.conf }
    public var leadTransferTarget: NodeID { leadTransferee }
    /// The term of the entry at `index`, if the log (or the snapshot) still knows it.
    public func term(at index: UInt64) -> UInt64? { log.term(at: index) }
    /// Entries in [lo, hi), if not compacted.
    public func entries(from lo: UInt64, to hi: UInt64) -> [Entry]? { log.entries(lo, hi, maxBytes: .max) }

    /// The membership as of `index` (for a snapshot taken there): `index` must not be older than
    /// the commit index at the last truncation point, which holds for anything applied.
    public func confState(at index: UInt64) -> ConfState {
        confHistory.last { $0.index <= index }?.conf ?? confHistory[0].conf
    }

    var quorum: Int { voters.count / 2 + 1 }
    var isPromotable: Bool { voters.contains(id) }
    var committedEntryInCurrentTerm: Bool { log.term(at: log.committed) == term }

    // MARK: - Host requests

    /// Proposes application data. On the leader, returns the entry's index; on a follower the
    /// proposal is forwarded to the leader (returns nil), and may be lost like any message.
    @discardableResult
    public func propose(_ data: [UInt8]) throws(RaftError) -> UInt64? {
        try propose(batch: [data])
    }

    /// Proposes several entries at once (one forwarded message, one append).
    @discardableResult
    public func propose(batch: [[UInt8]]) throws(RaftError) -> UInt64? {
        switch role {
        case .leader:
            guard leadTransferee == 0 else { throw .transferInProgress }
            appendEntries(batch.map { Entry(term: 0, index: 0, kind: .normal, data: $0) })
            return log.lastIndex
        default:
            guard leader != 0 else { throw .noLeader }
            send(Message(type: .propose, to: leader, entries: batch.map { Entry(term: 0, index: 0, data: $0) }))
            return nil
        }
    }

    /// Proposes a membership change; leader only. Returns the entry's index.
    @discardableResult
    public func proposeConfChange(_ change: ConfChange) throws(RaftError) -> UInt64 {
        guard role == .leader else { throw .notLeader(leader: leader) }
        guard leadTransferee == 0 else { throw .transferInProgress }
        // One change at a time, and not before the leader's own term has a committed entry:
        // both are needed for single-server changes to be safe (docs/raft.md).
        guard committedEntryInCurrentTerm, pendingConfIndex <= log.committed else { throw .confChangePending }
        guard confState.applying(change) != nil else { throw .invalidConfChange("no effect on \(confState)") }
        switch change.kind {
        case .addVoter:
            guard learners.contains(change.node) else {
                throw .invalidConfChange("add \(change.node) as a learner first, then promote it")
            }
            guard let pr = progress[change.node], pr.match >= log.committed else { throw .learnerNotCaughtUp }
        case .remove:
            guard voters != [change.node] else { throw .invalidConfChange("cannot remove the last voter") }
        case .addLearner:
            break
        }
        appendEntries([Entry(term: 0, index: 0, kind: .confChange, data: change.encoded())])
        return log.lastIndex
    }

    /// Asks for a linearizable read identified by `context` (unique per request). The answer
    /// comes as a `ReadState` in a later Ready; it may be lost (retry with a new context).
    public func readIndex(context: [UInt8]) throws(RaftError) {
        if role == .leader {
            leaderReadIndex(from: id, context: context)
        } else {
            guard leader != 0 else { throw .noLeader }
            send(Message(type: .readIndex, to: leader, context: context))
        }
    }

    /// Asks the leader to hand leadership to `target` (a voter).
    public func transferLeader(to target: NodeID) throws(RaftError) {
        if role == .leader {
            transferLeadership(to: target)
        } else {
            guard leader != 0 else { throw .noLeader }
            send(Message(type: .transferLeader, to: leader, index: target))
        }
    }

    /// Starts an election now (if this member may vote), as a timeout would.
    public func campaign() { hup(transfer: false) }

    /// One unit of logical time.
    public func tick() {
        if role == .leader { tickLeader() } else { tickElection() }
    }

    // MARK: - Ready / advance

    public var hasReady: Bool {
        guard outstanding == nil else { return false }
        return pendingBroadcast || softState != prevSoftState || hardState != prevHardState
            || !log.unstable.entries.isEmpty || log.unstable.snapshot != nil || log.hasNextCommittedEntries
            || !msgs.isEmpty || !msgsAfterPersist.isEmpty || !readStates.isEmpty
    }

    /// What the host must do now. Call `advance()` (or `reportPersistFailure()`) before the next.
    public func ready() -> Ready {
        precondition(outstanding == nil, "ready() called twice without advance()")
        flushBroadcast()
        var rd = Ready()
        let soft = softState
        if soft != prevSoftState {
            rd.softState = soft
            prevSoftState = soft
        }
        let hard = hardState
        let before = prevHardState
        if hard != prevHardState {
            rd.hardState = hard
            prevHardState = hard
        }
        rd.entries = log.unstable.entries
        rd.snapshot = log.unstable.snapshot
        rd.committedEntries = log.nextCommittedEntries(maxBytes: config.maxApplyBytesPerReady)
        rd.readStates = readStates
        readStates = []
        rd.messages = msgs
        msgs = []
        var held = msgsAfterPersist
        msgsAfterPersist = []
        if !rd.needsPersistence {
            // Nothing to write: what they depend on is durable already.
            rd.messages += held.filter { $0.to != id }
            held.removeAll { $0.to != id }
        }
        outstanding = Outstanding(
            held: held, lastEntry: rd.entries.last.map { ($0.index, $0.term) },
            snapshotIndex: rd.snapshot?.metadata.index, lastCommitted: rd.committedEntries.last?.index,
            hardStateBefore: before)
        return rd
    }

    /// The host made the last Ready's writes durable and applied its committed entries.
    public func advance() {
        guard let done = outstanding else { return }
        outstanding = nil
        if let index = done.snapshotIndex {
            log.unstable.stableSnapshot(to: index)
            log.applied = max(log.applied, index)
        }
        if let last = done.lastEntry { log.unstable.stable(to: last.index, term: last.term) }
        if let index = done.lastCommitted { log.applied = max(log.applied, index) }
        if role == .leader, var pr = progress[id], pr.maybeUpdate(log.persistedLastIndex) {
            progress[id] = pr
            if maybeCommit() { commitAdvanced() }
        }
        for m in done.held {
            if m.to == id { step(m) } else { msgs.append(m) }
        }
    }

    /// The host failed to make the last Ready durable. Nothing that depended on it is sent
    /// until a later write succeeds; a leader steps down (it can no longer promise durability);
    /// the unpersisted entries and hard state are handed out again in the next Ready.
    public func reportPersistFailure() {
        guard let failed = outstanding else { return }
        outstanding = nil
        prevHardState = failed.hardStateBefore
        msgsAfterPersist = failed.held + msgsAfterPersist
        if role == .leader { becomeFollower(term: term, leader: 0) }
    }

    // MARK: - Messages

    /// Feeds a message from a peer. Anything malformed or stale is ignored.
    public func step(_ m: Message) {
        guard m.to == id, m.from != 0 else { return }
        switch m.type {
        case .propose, .readIndex, .transferLeader:
            // Requests forwarded by peers carry no term: they must not move ours.
            stepByRole(m)
            return
        default:
            guard m.term != 0 else { return }
        }
        if m.term > term {
            if m.type == .vote || m.type == .preVote {
                let force = m.context == Self.transferContext
                let inLease = config.checkQuorum && leader != 0 && electionElapsed < config.electionTick
                // A member that hears from its leader ignores would-be candidates (lease), so a
                // partitioned member that comes back does not depose a working leader.
                if !force && inLease { return }
            }
            switch m.type {
            case .preVote:
                break
            case .preVoteResponse where !m.reject:
                break
            case .append, .heartbeat, .snapshot:
                becomeFollower(term: m.term, leader: m.from)
            default:
                becomeFollower(term: m.term, leader: 0)
            }
        } else if m.term < term {
            if (config.checkQuorum || config.preVote) && (m.type == .heartbeat || m.type == .append) {
                // A stale leader learns our term and steps down.
                send(Message(type: .appendResponse, to: m.from))
            } else if m.type == .preVote {
                send(Message(type: .preVoteResponse, to: m.from, term: term, reject: true))
            }
            return
        }

        switch m.type {
        case .vote, .preVote:
            let canVote =
                vote == m.from || (vote == 0 && leader == 0) || (m.type == .preVote && m.term > term)
            let response: MessageType = m.type == .vote ? .voteResponse : .preVoteResponse
            if canVote && log.isUpToDate(lastIndex: m.index, term: m.logTerm) {
                send(Message(type: response, to: m.from, term: m.term))
                if m.type == .vote {
                    electionElapsed = 0
                    vote = m.from
                }
            } else {
                send(Message(type: response, to: m.from, term: term, reject: true))
            }
        default:
            stepByRole(m)
        }
    }

    func stepByRole(_ m: Message) {
        switch role {
        case .leader: stepLeader(m)
        case .candidate, .preCandidate: stepCandidate(m)
        case .follower: stepFollower(m)
        }
    }

    func stepFollower(_ m: Message) {
        switch m.type {
        case .append:
            electionElapsed = 0
            leader = m.from
            handleAppend(m)
        case .heartbeat:
            electionElapsed = 0
            leader = m.from
            handleHeartbeat(m)
        case .snapshot:
            electionElapsed = 0
            leader = m.from
            handleSnapshotChunk(m)
        case .timeoutNow:
            // Learners and removed members never campaign.
            hup(transfer: true)
        case .readIndexResponse:
            readStates.append(ReadState(index: m.index, context: m.context))
        case .propose, .readIndex:
            // Forwarded to a member that is no longer leader: dropped (the client retries).
            break
        case .transferLeader:
            if leader != 0 && m.from != leader { send(Message(type: .transferLeader, to: leader, index: m.index)) }
        default:
            break
        }
    }

    func stepCandidate(_ m: Message) {
        switch m.type {
        case .append, .heartbeat, .snapshot:
            becomeFollower(term: m.term, leader: m.from)
            stepFollower(m)
        case .preVoteResponse where role == .preCandidate, .voteResponse where role == .candidate:
            if votes[m.from] == nil { votes[m.from] = !m.reject }
            switch tally() {
            case .won:
                if role == .preCandidate { startElection(pre: false, transfer: false) } else { becomeLeader() }
            case .lost:
                becomeFollower(term: term, leader: 0)
            case .pending:
                break
            }
        default:
            break
        }
    }

    func stepLeader(_ m: Message) {
        switch m.type {
        case .propose:
            guard leadTransferee == 0 else { return }
            // Forwarded membership changes are refused: they go through proposeConfChange.
            let entries = m.entries.filter { $0.kind == .normal }.map { Entry(term: 0, index: 0, data: $0.data) }
            if !entries.isEmpty { appendEntries(entries) }
            return
        case .readIndex:
            leaderReadIndex(from: m.from, context: m.context)
            return
        case .transferLeader:
            transferLeadership(to: m.index)
            return
        default:
            break
        }
        guard var pr = progress[m.from], m.from != id else { return }
        pr.recentActive = true
        switch m.type {
        case .appendResponse:
            if m.reject {
                var hint = m.rejectHint
                if m.hintTerm > 0 { hint = log.findConflictByTerm(m.rejectHint, m.hintTerm) }
                if pr.maybeDecrease(rejected: m.index, hint: hint) {
                    if pr.state == .replicate { pr.becomeProbe() }
                    progress[m.from] = pr
                    sendAppend(to: m.from)
                    return
                }
                progress[m.from] = pr
                return
            }
            let wasPaused = pr.isPaused
            if pr.maybeUpdate(m.index) || (pr.match == m.index && pr.state == .probe) {
                switch pr.state {
                case .probe:
                    pr.becomeReplicate()
                case .snapshot:
                    if pr.match >= pr.pendingSnapshot || pr.match + 1 >= log.firstIndex {
                        pr.becomeProbe()
                        pr.becomeReplicate()
                    }
                case .replicate:
                    pr.inflights.free(upTo: m.index)
                }
                progress[m.from] = pr
                if maybeCommit() {
                    commitAdvanced()
                } else if wasPaused {
                    sendAppend(to: m.from)
                }
                while progress[m.from]?.state == .replicate, sendAppend(to: m.from, ifEmpty: false) {}
                if m.from == leadTransferee, progress[m.from]?.match == log.lastIndex {
                    send(Message(type: .timeoutNow, to: m.from))
                }
            } else {
                progress[m.from] = pr
            }
        case .heartbeatResponse:
            pr.probeSent = false
            if pr.state == .replicate && pr.match < log.lastIndex && pr.match == pr.matchAtLastHeartbeat {
                // No progress across several heartbeats while appends are out: they were lost.
                pr.stalledHeartbeats += 1
                if pr.stalledHeartbeats >= 2 { pr.becomeProbe() }
            } else {
                pr.stalledHeartbeats = 0
            }
            pr.matchAtLastHeartbeat = pr.match
            progress[m.from] = pr
            if pr.state == .snapshot {
                // Resend from what the follower holds: chunks may have been lost.
                progress[m.from]!.snapshotSent = pr.snapshotAcked
                sendSnapshotChunk(to: m.from)
            } else if pr.match < log.lastIndex {
                sendAppend(to: m.from, ifEmpty: pr.state != .replicate)
            }
            if !m.context.isEmpty { readAcknowledged(by: m.from, context: m.context) }
        case .snapshotResponse:
            progress[m.from] = pr
            handleSnapshotResponse(m)
        default:
            progress[m.from] = pr
        }
    }

    // MARK: - Roles

    static let transferContext: [UInt8] = Array("transfer".utf8)

    enum VoteResult { case won, lost, pending }

    func tally() -> VoteResult {
        var granted = 0
        var rejected = 0
        for v in voters {
            switch votes[v] {
            case true?: granted += 1
            case false?: rejected += 1
            case nil: break
            }
        }
        if granted >= quorum { return .won }
        if rejected > voters.count - quorum { return .lost }
        return .pending
    }

    func resetRandomizedElectionTimeout() {
        randomizedElectionTimeout = config.electionTick + Int(rng.next() % UInt64(config.electionTick))
    }

    func reset(term newTerm: UInt64) {
        if newTerm != term {
            term = newTerm
            vote = 0
        }
        leader = 0
        electionElapsed = 0
        heartbeatElapsed = 0
        resetRandomizedElectionTimeout()
        leadTransferee = 0
        votes = [:]
        pendingConfIndex = 0
        pendingBroadcast = false
        pendingReads = []
        readsAwaitingTermCommit = []
        resetProgress()
    }

    func resetProgress() {
        progress = [:]
        for node in voters + learners {
            var pr = Progress(
                next: log.lastIndex + 1, isLearner: learners.contains(node),
                maxInflightMsgs: config.maxInflightMsgs, maxInflightBytes: config.maxInflightBytes)
            if node == id { pr.match = log.persistedLastIndex }
            progress[node] = pr
        }
    }

    func becomeFollower(term: UInt64, leader: NodeID) {
        reset(term: term)
        role = .follower
        self.leader = leader
    }

    func becomeLeader() {
        reset(term: term)
        role = .leader
        leader = id
        if var me = progress[id] {
            me.becomeReplicate()
            me.recentActive = true
            progress[id] = me
        }
        // Conservative: any change in the log before this term may be uncommitted.
        pendingConfIndex = log.lastIndex
        // The no-op that commits the earlier terms' entries and opens ReadIndex.
        appendEntries([Entry(term: 0, index: 0)])
    }

    func tickElection() {
        electionElapsed += 1
        if isPromotable && electionElapsed >= randomizedElectionTimeout {
            electionElapsed = 0
            hup(transfer: false)
        }
    }

    func tickLeader() {
        heartbeatElapsed += 1
        electionElapsed += 1
        if electionElapsed >= config.electionTick {
            electionElapsed = 0
            if config.checkQuorum {
                let active = voters.filter { $0 == id || progress[$0]?.recentActive == true }.count
                if active < quorum {
                    becomeFollower(term: term, leader: 0)
                    return
                }
                for node in progress.keys where node != id { progress[node]!.recentActive = false }
            }
            // A transfer that did not finish within an election timeout is abandoned.
            leadTransferee = 0
        }
        if heartbeatElapsed >= config.heartbeatTick {
            heartbeatElapsed = 0
            broadcastHeartbeat(context: pendingReads.last?.context ?? [])
        }
    }

    func hup(transfer: Bool) {
        guard role != .leader, isPromotable else { return }
        // A snapshot not yet installed leaves the log's membership unknown: wait.
        guard !log.hasPendingSnapshot else { return }
        startElection(pre: config.preVote && !transfer, transfer: transfer)
    }

    func startElection(pre: Bool, transfer: Bool) {
        let voteTerm: UInt64
        if pre {
            role = .preCandidate
            votes = [:]
            leader = 0
            voteTerm = term + 1
            votes[id] = true
        } else {
            reset(term: term + 1)
            role = .candidate
            vote = id
            voteTerm = term
            // Our own vote counts only once it is durable, like anyone else's.
            msgsAfterPersist.append(Message(type: .voteResponse, from: id, to: id, term: term))
        }
        if pre, tally() == .won {
            startElection(pre: false, transfer: transfer)
            return
        }
        for node in voters where node != id {
            send(
                Message(
                    type: pre ? .preVote : .vote, to: node, term: voteTerm, logTerm: log.lastTerm,
                    index: log.lastIndex, context: transfer ? Self.transferContext : []))
        }
    }

    // MARK: - Replication

    func appendEntries(_ entries: [Entry]) {
        var next = log.lastIndex + 1
        var stamped = entries
        for i in stamped.indices {
            stamped[i].term = term
            stamped[i].index = next
            next += 1
        }
        log.append(stamped)
        recordConfChanges(in: stamped)
        for entry in stamped where entry.kind == .confChange { pendingConfIndex = entry.index }
        pendingBroadcast = true
    }

    func flushBroadcast() {
        guard pendingBroadcast, role == .leader else {
            pendingBroadcast = false
            return
        }
        pendingBroadcast = false
        for node in progress.keys.sorted() where node != id {
            guard sendAppend(to: node) else { continue }
            while progress[node]?.state == .replicate, sendAppend(to: node, ifEmpty: false) {}
        }
    }

    /// Sends the follower what it misses (or just the commit index); false if nothing was sent.
    @discardableResult
    func sendAppend(to node: NodeID, ifEmpty: Bool = true) -> Bool {
        guard node != id, var pr = progress[node], !pr.isPaused else { return false }
        let prevIndex = pr.next - 1
        guard let prevTerm = log.term(at: prevIndex),
            let entries = log.entries(pr.next, log.lastIndex + 1, maxBytes: config.maxSizePerMsg)
        else {
            return sendSnapshot(to: node)
        }
        if entries.isEmpty && !ifEmpty { return false }
        let bytes = entries.reduce(0) { $0 + entryCost($1) }
        pr.sentEntries(last: entries.last?.index, bytes: bytes)
        progress[node] = pr
        send(Message(type: .append, to: node, logTerm: prevTerm, index: prevIndex, entries: entries, commit: log.committed))
        return true
    }

    func broadcastHeartbeat(context: [UInt8]) {
        for (node, pr) in progress.sorted(by: { $0.key < $1.key }) where node != id {
            send(Message(type: .heartbeat, to: node, commit: min(pr.match, log.committed), context: context))
        }
    }

    func maybeCommit() -> Bool {
        let matches = voters.map { progress[$0]?.match ?? 0 }.sorted(by: >)
        guard !matches.isEmpty else { return false }
        return log.maybeCommit(matches[quorum - 1], term: term)
    }

    func commitAdvanced() {
        pendingBroadcast = true
        if committedEntryInCurrentTerm && !readsAwaitingTermCommit.isEmpty {
            let waiting = readsAwaitingTermCommit
            readsAwaitingTermCommit = []
            for read in waiting { leaderReadIndex(from: read.from, context: read.context) }
        }
        // A leader removed from the configuration hands over once the removal is committed.
        if !voters.contains(id), let last = confHistory.last, last.index <= log.committed {
            becomeFollower(term: term, leader: 0)
        }
    }

    func handleAppend(_ m: Message) {
        if m.index < log.committed {
            send(Message(type: .appendResponse, to: m.from, index: log.committed))
            return
        }
        // A peer's malformed batch is dropped, never trusted.
        for (k, entry) in m.entries.enumerated() where entry.index != m.index + 1 + UInt64(k) || entry.term == 0 {
            return
        }
        if log.matchTerm(m.index, m.logTerm) {
            let lastNew = m.index + UInt64(m.entries.count)
            let conflict = log.findConflict(m.entries)
            if conflict != 0 {
                // Rewriting committed entries would break safety: a peer that asks is wrong.
                guard conflict > log.committed else { return }
                let new = Array(m.entries[Int(conflict - m.index - 1)...])
                log.append(new)
                recordConfChanges(in: new)
            }
            log.commit(to: min(m.commit, lastNew))
            send(Message(type: .appendResponse, to: m.from, index: lastNew))
        } else {
            var hint = min(m.index, log.lastIndex)
            hint = log.findConflictByTerm(hint, m.logTerm)
            let hintTerm = log.term(at: hint) ?? 0
            send(
                Message(
                    type: .appendResponse, to: m.from, index: m.index, reject: true, rejectHint: hint,
                    hintTerm: hintTerm))
        }
    }

    func handleHeartbeat(_ m: Message) {
        log.commit(to: m.commit)
        send(Message(type: .heartbeatResponse, to: m.from, context: m.context))
    }

    // MARK: - Membership

    /// Records the membership changes among freshly appended entries (the first of which may
    /// have truncated the log, reverting later changes).
    func recordConfChanges(in entries: [Entry]) {
        guard let first = entries.first?.index else { return }
        let before = confHistory.last!.conf
        while confHistory.count > 1, confHistory.last!.index >= first { confHistory.removeLast() }
        for entry in entries where entry.kind == .confChange {
            // An undecodable or no-op change changes nothing, on every member alike.
            guard let change = ConfChange(encoded: entry.data),
                let next = confHistory.last!.conf.applying(change)
            else { continue }
            confHistory.append((entry.index, next))
        }
        // Truncation never reaches below the commit index, and snapshots are taken at applied
        // indices: only the configuration in force at `applied` and later ones can matter.
        while confHistory.count > 1, confHistory[1].index <= log.applied { confHistory.removeFirst() }
        if confHistory.last!.conf != before { applyConf(confHistory.last!.conf) }
    }

    func applyConf(_ conf: ConfState) {
        voters = conf.voters.sorted()
        learners = conf.learners.sorted()
        guard role == .leader else { return }
        for node in voters + learners {
            if progress[node] == nil {
                var pr = Progress(
                    next: log.lastIndex + 1, isLearner: learners.contains(node),
                    maxInflightMsgs: config.maxInflightMsgs, maxInflightBytes: config.maxInflightBytes)
                pr.recentActive = true
                progress[node] = pr
            } else {
                progress[node]!.isLearner = learners.contains(node)
            }
        }
        for node in progress.keys where node != id && !voters.contains(node) && !learners.contains(node) {
            progress[node] = nil
        }
        if leadTransferee != 0 && !voters.contains(leadTransferee) { leadTransferee = 0 }
        pendingBroadcast = true
    }

    // MARK: - Reads

    func leaderReadIndex(from: NodeID, context: [UInt8]) {
        guard committedEntryInCurrentTerm else {
            readsAwaitingTermCommit.append((from, context))
            return
        }
        if voters == [id] {
            answerRead(to: from, index: log.committed, context: context)
            return
        }
        pendingReads.append(PendingRead(context: context, index: log.committed, from: from, acks: [id]))
        broadcastHeartbeat(context: context)
    }

    func readAcknowledged(by node: NodeID, context: [UInt8]) {
        guard let i = pendingReads.firstIndex(where: { $0.context == context }) else { return }
        pendingReads[i].acks.insert(node)
        guard pendingReads[i].acks.filter({ voters.contains($0) }).count >= quorum else { return }
        // A quorum still follows us as of this read: it and every earlier one are safe.
        let done = pendingReads[...i]
        pendingReads.removeFirst(i + 1)
        for read in done { answerRead(to: read.from, index: read.index, context: read.context) }
    }

    func answerRead(to node: NodeID, index: UInt64, context: [UInt8]) {
        if node == id {
            readStates.append(ReadState(index: index, context: context))
        } else {
            send(Message(type: .readIndexResponse, to: node, index: index, context: context))
        }
    }

    // MARK: - Leadership transfer

    func transferLeadership(to target: NodeID) {
        guard role == .leader, target != id, voters.contains(target), progress[target] != nil else { return }
        if leadTransferee == target { return }
        leadTransferee = target
        // The transfer must finish within an election timeout, or it is abandoned.
        electionElapsed = 0
        if progress[target]!.match == log.lastIndex {
            send(Message(type: .timeoutNow, to: target))
        } else {
            sendAppend(to: target)
        }
    }

    // MARK: - Sending

    func send(_ message: Message) {
        var m = message
        m.from = id
        switch m.type {
        case .propose, .readIndex, .transferLeader:
            m.term = 0
        case .vote, .preVote, .voteResponse, .preVoteResponse:
            break  // the term is set by the caller
        default:
            m.term = term
        }
        switch m.type {
        case .appendResponse, .voteResponse, .preVoteResponse:
            // They vouch for our log, term or vote: only once those are durable.
            msgsAfterPersist.append(m)
        default:
            msgs.append(m)
        }
    }
}
