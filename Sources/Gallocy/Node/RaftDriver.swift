import Dispatch
import Foundation
import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage
import Logging
import Prometheus
import Synchronization

/// The one serial executor of a member: a dedicated OS thread that owns the Raft core, the state
/// machine and every waiter. Everything else talks to it through its inbox: peer messages
/// (`enqueue`) and tasks (`submit`), closures that run on the thread with the driver in hand.
///
/// One turn of the loop drains the whole inbox, steps everything, ticks, and then runs the Ready
/// cycle: send, persist (one synced LMDB transaction for the batch), apply, answer, advance.
/// While one sync runs, new requests gather in the inbox and go out together in the next one:
/// that is the group commit.
///
/// `@unchecked Sendable`: the mutable state below the inbox is touched only on the driver thread
/// (tasks run there); the inbox and the published view are behind their own `Mutex`es.
package final class RaftDriver: @unchecked Sendable {
    package enum Event: Sendable {
        case message(Message)
        case task(@Sendable (RaftDriver) -> Void)
    }

    /// What other threads may read without a round trip to the driver (status, metrics).
    package struct View: Sendable {
        package var role: String = "follower"
        package var term: UInt64 = 0
        package var leader: NodeID = 0
        package var commitIndex: UInt64 = 0
        package var appliedIndex: UInt64 = 0
        package var lastIndex: UInt64 = 0
        package var snapshotIndex: UInt64 = 0
        package var members: [NodeID] = []
        package var bootstrapped = false
    }

    struct Inbox {
        var events: [Event] = []
        var closed = false
    }

    struct ProposalWaiter {
        var command: Command
        var bytes: [UInt8]
        var deadline: ContinuousClock.Instant
        var lastSent: ContinuousClock.Instant?
        var resume: (Result<StateMachine.AppliedEntry, APIError>) -> Void
        /// Called on the driver thread right after the entry applied, before the next entry
        /// applies (the runtime finishes its releases there); then `resume` is called.
        var onApplied: ((StateMachine.AppliedEntry) -> Void)?
    }

    struct BarrierWaiter {
        var name: String
        var generation: UInt64
        var resume: (Result<Void, APIError>) -> Void
    }

    struct LockWaiter {
        var name: String
        var epoch: UInt64
        var deadline: ContinuousClock.Instant
        var resume: (Result<Void, APIError>) -> Void
    }

    struct ReadWaiter {
        var deadline: ContinuousClock.Instant
        var lastSent: ContinuousClock.Instant?
        var index: UInt64?
        var run: (RaftDriver, APIError?) -> Void
    }

    struct ConfWaiter {
        var data: [UInt8]
        var deadline: ContinuousClock.Instant
        var resume: (Result<Void, APIError>) -> Void
    }

    package let id: NodeID
    let configuration: NodeConfiguration
    let logger: Logger
    let metrics: NodeMetrics
    let storage: RaftStorage
    private(set) var reader: StorageLogReader!
    private(set) var node: RaftNode!
    private(set) var machine: StateMachine
    var transport: PeerTransport?
    /// Called once, from the driver thread, when the member must stop (a broken store, a
    /// settings conflict, a state machine that cannot apply).
    let onFatal: @Sendable (NodeError) -> Void

    private let inbox = Mutex(Inbox())
    private let wake = DispatchSemaphore(value: 0)
    private let published = Mutex(View())
    private let finished = DispatchSemaphore(value: 0)
    private let clock = ContinuousClock()

    // Driver-thread state.
    private(set) var stopped = false
    private var session: UInt64
    /// Whether the page table's batch of this Ready cycle is open (`openBatch()`).
    private var batchOpen = false
    private var nextSequence: UInt64 = 1
    private var proposals: [UInt64: ProposalWaiter] = [:]
    private var nextReadContext: UInt64 = 1
    private var reads: [UInt64: ReadWaiter] = [:]
    private var confWaiters: [UInt64: ConfWaiter] = [:]
    private var barrierWaiters: [BarrierWaiter] = []
    private var lockWaiters: [LockWaiter] = []
    /// Once per term at once, then every 2 s while the settings have not applied.
    private var lastBootstrapProposal: (term: UInt64, at: ContinuousClock.Instant)?
    private var lastLockCheck: ContinuousClock.Instant?
    private var expiriesProposed: [String: (epoch: UInt64, at: ContinuousClock.Instant)] = [:]
    /// Page lease expiries proposed (RaftDriver+Leases.swift), by page.
    var pageLeaseExpiriesProposed: [UInt64: (grant: UInt64, at: ContinuousClock.Instant)] = [:]
    private var snapshotIndex: UInt64
    private var appliedSinceSnapshot: (entries: UInt64, bytes: UInt64) = (0, 0)
    private var persistFailures = 0
    /// A hard state whose only change from the stored one is its commit index, not yet written
    /// (see `processReady`).
    private var deferredHardState: HardState?
    private var persistedConf: ConfState

    init(
        configuration: NodeConfiguration, storage: RaftStorage, machine: StateMachine, logger: Logger,
        metrics: NodeMetrics, onFatal: @escaping @Sendable (NodeError) -> Void
    ) {
        self.id = configuration.id
        self.configuration = configuration
        self.storage = storage
        self.machine = machine
        self.logger = logger
        self.metrics = metrics
        self.onFatal = onFatal
        var session: UInt64 = 0
        while session == 0 { session = UInt64.random(in: .min ... .max) }
        self.session = session
        self.snapshotIndex = storage.snapshot?.metadata.index ?? 0
        self.persistedConf = storage.confState
        self.reader = StorageLogReader(storage: storage, logger: logger) { [weak self] error in
            self?.fail(NodeError(.storage, "the data directory cannot be read: \(error.message)"))
        }
        let raftConfig = RaftConfig(
            id: configuration.id, electionTick: configuration.electionTick, heartbeatTick: configuration.heartbeatTick,
            maxSizePerMsg: 1 << 20, maxInflightMsgs: 256, snapshotChunkSize: 1 << 20,
            seed: UInt64.random(in: .min ... .max), applied: snapshotIndex)
        self.node = RaftNode(config: raftConfig, storage: reader)
        publish()
    }

    // MARK: - Inbox

    /// Hands a peer message to the driver; any thread, never blocks.
    package func enqueue(_ message: Message) { post(.message(message)) }

    /// Runs `body` on the driver thread. Returns false if the driver has stopped (`body` then
    /// never runs).
    @discardableResult
    package func submit(_ body: @escaping @Sendable (RaftDriver) -> Void) -> Bool { post(.task(body)) }

    @discardableResult
    private func post(_ event: Event) -> Bool {
        let accepted = inbox.withLock { inbox -> Bool in
            guard !inbox.closed else { return false }
            inbox.events.append(event)
            return inbox.events.count == 1
        }
        // One signal per batch is enough: the loop drains everything when it wakes.
        if accepted { wake.signal() }
        return accepted || inbox.withLock { !$0.closed }
    }

    package var view: View { published.withLock { $0 } }

    // MARK: - Thread

    package func start() {
        let thread = Thread { [self] in
            self.run()
            self.finished.signal()
        }
        thread.name = "gallocy-raft-\(id)"
        thread.start()
    }

    /// Stops the loop, fails every waiter with 503, and returns once the thread has finished.
    package func stop() {
        inbox.withLock { $0.closed = true }
        wake.signal()
        // Signalled again so that a second `stop()` (or one after a fatal stop) returns too.
        finished.wait()
        finished.signal()
    }

    private func run() {
        let tick = configuration.tickInterval
        var nextTick = clock.now.advanced(by: tick)
        while true {
            let wait = clock.now.duration(to: nextTick)
            if wait > .zero {
                let (s, a) = wait.components
                let nanos = Int(s) * 1_000_000_000 + Int(a / 1_000_000_000)
                _ = wake.wait(timeout: .now() + .nanoseconds(max(nanos, 0)))
            }
            let (events, closed) = inbox.withLock { inbox in
                let taken = inbox.events
                inbox.events.removeAll(keepingCapacity: true)
                return (taken, inbox.closed)
            }
            if closed || stopped {
                stopped = true
                answerLeftover(events[...])
                break
            }
            for (k, event) in events.enumerated() {
                switch event {
                case .message(var message):
                    if message.type == .propose {
                        proposeForwardedConfChanges(message)
                        stampLeaderTime(&message)
                    }
                    node.step(message)
                case .task(let body): body(self)
                }
                if stopped {
                    answerLeftover(events[(k + 1)...])
                    break
                }
            }
            let now = clock.now
            if now >= nextTick {
                node.tick()
                nextTick = now.advanced(by: tick)
                periodic(now: now)
            }
            if stopped { break }
            processReady()
            publish()
        }
        stopped = true
        // Whatever waits is answered: the member is going away.
        let leftover = inbox.withLock { inbox in
            inbox.closed = true
            let taken = inbox.events
            inbox.events = []
            return taken
        }
        answerLeftover(leftover[...])
        failAllWaiters(.unavailable("the member is shutting down"))
        do { try writeDeferredHardState() } catch {
            logger.warning("could not record the last commit index", metadata: ["error": "\(error.message)"])
        }
    }

    /// Runs the tasks among `events` once the driver has stopped: each sees `stopped` and
    /// answers 503, so no caller waits forever.
    private func answerLeftover(_ events: ArraySlice<Event>) {
        for case .task(let body) in events { body(self) }
    }

    /// Stops the member for good: logs, tells the host, fails the waiters.
    func fail(_ error: NodeError) {
        guard !stopped else { return }
        stopped = true
        logger.critical("stopping the member", metadata: ["reason": "\(error.message)"])
        onFatal(error)
    }

    private func failAllWaiters(_ error: APIError) {
        let p = proposals
        proposals = [:]
        for waiter in p.values { waiter.resume(.failure(error)) }
        let r = reads
        reads = [:]
        for waiter in r.values { waiter.run(self, error) }
        let b = barrierWaiters
        barrierWaiters = []
        for waiter in b { waiter.resume(.failure(error)) }
        let l = lockWaiters
        lockWaiters = []
        for waiter in l { waiter.resume(.failure(error)) }
        let c = confWaiters
        confWaiters = [:]
        for waiter in c.values { waiter.resume(.failure(error)) }
    }

    // MARK: - Proposals

    /// Proposes `body` under this process's session and calls `resume` once the entry applied on
    /// this member (or with 503/504 at the deadline). Driver thread only.
    func propose(
        _ body: CommandBody, deadline: ContinuousClock.Instant,
        onApplied: ((StateMachine.AppliedEntry) -> Void)? = nil,
        resume: @escaping (Result<StateMachine.AppliedEntry, APIError>) -> Void
    ) {
        guard !stopped else { return resume(.failure(.unavailable("the member is shutting down"))) }
        let sequence = nextSequence
        nextSequence += 1
        let command = Command(company: 0, client: ClientTag(session: session, sequence: sequence), body: body)
        var waiter = ProposalWaiter(
            command: command, bytes: CommandCodec.encode(command), deadline: deadline, lastSent: nil, resume: resume,
            onApplied: onApplied)
        send(&waiter)
        proposals[sequence] = waiter
    }

    private func send(_ waiter: inout ProposalWaiter) {
        // Before the bootstrap entry applied here, a command could land in the log ahead of it
        // and be rejected as not bootstrapped: hold it (the periodic pass sends it once ready).
        guard machine.settings != nil else { return }
        do {
            try node.propose(waiter.bytes)
            waiter.lastSent = clock.now
            metrics.proposals.increment()
        } catch {
            // No leader known or a transfer in progress: the periodic pass proposes it again.
            logger.trace("proposal deferred", metadata: ["reason": "\(error)"])
        }
    }

    /// Proposes a command that no client waits for (bootstrap, lock expiry).
    func proposeUntracked(_ body: CommandBody) {
        let command = Command(company: 0, client: .none, body: body)
        _ = try? node.propose(CommandCodec.encode(command))
    }

    // MARK: - Reads

    /// Calls `run` on the driver thread once this member has applied everything committed
    /// before the call (ReadIndex), or with an error at the deadline.
    func linearizableRead(deadline: ContinuousClock.Instant, run: @escaping (RaftDriver, APIError?) -> Void) {
        guard !stopped else { return run(self, .unavailable("the member is shutting down")) }
        let context = nextReadContext
        nextReadContext += 1
        var waiter = ReadWaiter(deadline: deadline, lastSent: nil, index: nil, run: run)
        sendRead(context, &waiter)
        reads[context] = waiter
    }

    private func sendRead(_ context: UInt64, _ waiter: inout ReadWaiter) {
        do {
            try node.readIndex(context: Self.encode(context))
            waiter.lastSent = clock.now
        } catch {
            logger.trace("read index deferred", metadata: ["reason": "\(error)"])
        }
    }

    static func encode(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) } }

    static func decode(_ bytes: [UInt8]) -> UInt64? {
        guard bytes.count == 8 else { return nil }
        return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << UInt64($1.offset * 8) }
    }

    // MARK: - Membership

    /// Proposes a membership change on the leader; `resume` once it applied here.
    func proposeConfChange(_ change: ConfChange, resume: @escaping (Result<Void, APIError>) -> Void) {
        guard !stopped else { return resume(.failure(.unavailable("the member is shutting down"))) }
        do {
            let index = try node.proposeConfChange(change)
            confWaiters[index] = ConfWaiter(
                data: change.encoded(), deadline: clock.now.advanced(by: configuration.requestDeadline), resume: resume)
        } catch {
            resume(.failure(Self.apiError(error, leader: node.leader)))
        }
    }

    /// On a follower: success once `change` is in effect in the membership as of the applied
    /// index; otherwise (with `send`) forwards it to the leader as a `propose` message carrying a
    /// `confChange` entry, and answers 503 `forwarded` so the caller checks again shortly. The
    /// core drops such entries from forwarded proposals; the leader's driver picks them out and
    /// proposes them through `proposeConfChange`, with all its checks. A refused or lost
    /// forward is simply sent again.
    func forwardConfChange(_ change: ConfChange, send: Bool) -> Result<Void, APIError> {
        if node.confState(at: node.applied).applying(change) == nil && node.confState.applying(change) == nil {
            return .success(())
        }
        guard node.leader != 0 else { return .failure(.unavailable("no leader is known; retry shortly")) }
        if send {
            transport?.send(
                Message(type: .propose, from: id, to: node.leader, entries: [
                    Entry(term: 0, index: 0, kind: .confChange, data: change.encoded())
                ]))
        }
        return .failure(APIError(status: 503, code: "forwarded", message: "forwarded to the leader (member \(node.leader))"))
    }

    /// On the leader: membership changes that followers forwarded (see `forwardConfChange`).
    private func proposeForwardedConfChanges(_ message: Message) {
        guard message.type == .propose, node.role == .leader else { return }
        for entry in message.entries where entry.kind == .confChange {
            guard let change = ConfChange(encoded: entry.data), node.confState.applying(change) != nil else { continue }
            do {
                _ = try node.proposeConfChange(change)
                logger.info("membership change forwarded by a follower", metadata: ["from": "\(message.from)", "change": "\(change.kind) \(change.node)"])
            } catch {
                logger.debug("forwarded membership change refused", metadata: ["from": "\(message.from)", "reason": "\(error)"])
            }
        }
    }

    static func apiError(_ error: RaftError, leader: NodeID) -> APIError {
        switch error {
        case .notLeader(let leader):
            if leader == 0 { return .unavailable("no leader is known; retry shortly") }
            return APIError(
                status: 503, code: "not_leader",
                message: "membership changes are served by the leader (member \(leader)); send the request there")
        case .noLeader: return .unavailable("no leader is known; retry shortly")
        case .transferInProgress: return .unavailable("a leadership transfer is in progress; retry shortly")
        case .confChangePending: return APIError(status: 503, code: "busy", message: "another membership change is in progress; retry shortly")
        case .learnerNotCaughtUp: return APIError(status: 503, code: "catching_up", message: "the new member has not caught up yet")
        case .invalidConfChange(let why): return .badRequest("invalid membership change: \(why)")
        }
    }

    // MARK: - Periodic work (every tick)

    private func periodic(now: ContinuousClock.Instant) {
        let noLeader = node.leader == 0
        for (sequence, var waiter) in proposals {
            if now >= waiter.deadline {
                proposals[sequence] = nil
                waiter.resume(.failure(noLeader
                    ? .unavailable("no leader is known (no quorum?); the request may or may not take effect")
                    : .timeout("the request was not committed in time; it may or may not take effect")))
            } else if waiter.lastSent.map({ $0.duration(to: now) >= configuration.reproposeInterval }) ?? true {
                send(&waiter)
                proposals[sequence] = waiter
            }
        }
        for (context, var waiter) in reads {
            if now >= waiter.deadline {
                reads[context] = nil
                waiter.run(self, noLeader ? .unavailable("no leader is known (no quorum?)") : .timeout("the read timed out"))
            } else if waiter.index == nil,
                waiter.lastSent.map({ $0.duration(to: now) >= .milliseconds(500) }) ?? true
            {
                // A read index request or its answer may be lost: ask again under a new context.
                reads[context] = nil
                let fresh = nextReadContext
                nextReadContext += 1
                sendRead(fresh, &waiter)
                reads[fresh] = waiter
            }
        }
        answerLocks(now: now)
        for (index, waiter) in confWaiters where now >= waiter.deadline {
            confWaiters[index] = nil
            waiter.resume(.failure(.timeout("the membership change was not committed in time; it may or may not take effect")))
        }
        guard node.role == .leader else { return }
        maybeProposeBootstrap(now: now)
        if lastLockCheck.map({ $0.duration(to: now) >= .milliseconds(200) }) ?? true {
            lastLockCheck = now
            expireLocks(now: now)
            expirePageLeases(now: now)
        }
    }

    /// The first leader of a new cluster records its settings (again every 2 s until they
    /// applied: a proposal may be lost in a leader change; a duplicate applies as a rejection).
    private func maybeProposeBootstrap(now: ContinuousClock.Instant) {
        guard node.role == .leader, machine.settings == nil else { return }
        if let last = lastBootstrapProposal, last.term == node.term, last.at.duration(to: now) < .seconds(2) { return }
        lastBootstrapProposal = (node.term, now)
        let settings = ClusterSettings(
            clusterID: UInt64.random(in: 1 ... .max), heapBase: NodeConfiguration.heapBase,
            heapSize: configuration.heapSize ?? NodeConfiguration.defaultHeapSize, pageSize: NodeConfiguration.pageSize)
        logger.info("bootstrapping the cluster", metadata: ["heap_size": "\(settings.heapSize)"])
        proposeUntracked(.bootstrap(settings))
    }

    /// The leader decides that leases ran out (by its wall clock) and logs it; applying the log
    /// never reads a clock.
    private func expireLocks(now: ContinuousClock.Instant) {
        guard machine.settings != nil, let locks = try? machine.pageTable.locks(company: 0) else { return }
        let wall = Self.wallClockMillis()
        for lock in locks {
            guard lock.holder != nil, let expiresAt = lock.expiresAt, expiresAt < wall else { continue }
            if let last = expiriesProposed[lock.name], last.epoch == lock.epoch, last.at.duration(to: now) < .seconds(1) {
                continue
            }
            expiriesProposed[lock.name] = (lock.epoch, now)
            proposeUntracked(.lockExpire(name: lock.name, epoch: lock.epoch))
        }
    }

    /// Milliseconds since the Unix epoch (plus `GALLOCY_CLOCK_OFFSET_MS`, a testing knob that
    /// simulates a member whose clock is off). Lease times are the leader's: it expires leases by
    /// this clock, and it stamps the time of every acquire and lease request forwarded to it
    /// (`stampLeaderTime`); only a member's own proposals made while it leads carry its clock
    /// from the moment it proposed them. So members' clocks matter only across a change of
    /// leader, where they are assumed to agree to well within a lease's ttl (NTP).
    static func wallClockMillis() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let millis = Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000 + clockOffsetMillis
        return UInt64(max(0, millis))
    }

    private static let clockOffsetMillis: Int64 = {
        guard let text = ProcessInfo.processInfo.environment["GALLOCY_CLOCK_OFFSET_MS"] else { return 0 }
        return Int64(text) ?? 0
    }()

    /// On the leader: the commands in a proposal forwarded by another member whose meaning
    /// depends on the time (lock acquires, page-lease requests and releases) get this leader's
    /// clock in place of the proposer's, so that a grant is decided and timed by the same clock
    /// that later expires it. The entry is still what every member applies; nothing reads a
    /// clock when applying.
    private func stampLeaderTime(_ message: inout Message) {
        guard node.role == .leader else { return }
        var now: UInt64?
        for i in message.entries.indices where message.entries[i].kind == .normal {
            let data = message.entries[i].data
            // The tag is byte 1 (docs/formats.md): decode only the few commands that carry a time.
            guard data.count > 2, data[0] == CommandCodec.version,
                data[1] == CommandCodec.Tag.lockAcquire.rawValue || data[1] == CommandCodec.Tag.leaseRequest.rawValue
                    || data[1] == CommandCodec.Tag.leaseRelease.rawValue,
                var command = try? CommandCodec.decode(data)
            else { continue }
            let time = now ?? Self.wallClockMillis()
            now = time
            switch command.body {
            case .lockAcquire(let name, let member, let ttlMillis, _):
                command.body = .lockAcquire(name: name, member: member, ttlMillis: ttlMillis, now: time)
            case .leaseRequest(let page, let member, let write, let ttlMillis, _):
                command.body = .leaseRequest(page: page, member: member, write: write, ttlMillis: ttlMillis, now: time)
            case .leaseRelease(let page, let member, let grant, let diff, _):
                command.body = .leaseRelease(page: page, member: member, grant: grant, diff: diff, now: time)
            default:
                continue
            }
            message.entries[i].data = CommandCodec.encode(command)
        }
    }

    // MARK: - The Ready cycle

    private func processReady() {
        // Every entry this call applies shares one page-table transaction (closed before a
        // snapshot is installed, and before anything is answered or snapshotted below).
        defer { closeBatch() }
        while !stopped && node.hasReady {
            let rd = node.ready()
            if let soft = rd.softState {
                if soft.role == .candidate { metrics.elections.increment() }
                if soft.leader != 0 {
                    // A new leader: what was forwarded to the old one may be lost; the next tick
                    // proposes it again (a duplicate applies once, by its session sequence).
                    for sequence in proposals.keys { proposals[sequence]?.lastSent = nil }
                    for context in reads.keys where reads[context]?.index == nil { reads[context]?.lastSent = nil }
                }
                logger.info(
                    "role changed",
                    metadata: ["role": "\(soft.role)", "leader": "\(soft.leader)", "term": "\(node.term)"])
            }
            // The core puts here only what may leave before the write (docs/raft.md).
            if !rd.messages.isEmpty {
                for m in rd.messages where m.type == .append && !m.entries.isEmpty {
                    metrics.entriesReplicated.increment(by: Int64(m.entries.count))
                    metrics.bytesReplicated.increment(by: Int64(m.entries.reduce(0) { $0 + $1.data.count }))
                }
                for m in rd.messages where m.type == .snapshot {
                    logger.debug(
                        "sending a snapshot chunk",
                        metadata: ["to": "\(m.to)", "index": "\(m.index)", "offset": "\(m.snapshot?.offset ?? 0)"])
                }
                transport?.send(rd.messages)
            }
            // Committed entries that this member's log already holds durably (below the first
            // entry this Ready writes) are applied before the write, so that their answers do
            // not wait for the sync of the next batch. On the leader that is all of them (its
            // own log counts towards commitment only once durable); a follower may learn that
            // entries of this very Ready are committed: those are applied after the write.
            var applied = 0
            if rd.snapshot?.isEmpty ?? true {
                let durable = min(storage.lastIndex, (rd.entries.first?.index ?? UInt64.max) &- 1)
                while applied < rd.committedEntries.count, rd.committedEntries[applied].index <= durable {
                    apply(rd.committedEntries[applied])
                    applied += 1
                    if stopped { return }
                }
            }
            do {
                if let snapshot = rd.snapshot, !snapshot.isEmpty {
                    closeBatch()
                    try install(snapshot, hardState: rd.hardState)
                }
                // The latest membership in the log (the core activates changes on append), for
                // `gallocy log info`; the core itself restarts from the snapshot's.
                let conf = node.confState
                let newConf = conf != persistedConf && !rd.entries.isEmpty ? conf : nil
                // A hard state that differs from the stored one only in its commit index is not
                // worth a sync of its own (the commit index is volatile in Raft: a member that
                // restarts with an older one learns the current one from the leader). It is
                // written with the next entries, term or vote, before a compaction, and at stop.
                let hardState = rd.hardState ?? deferredHardState
                let stored = storage.hardState
                let mustWrite =
                    !rd.entries.isEmpty || newConf != nil
                    || hardState.map { $0.term != stored.term || $0.vote != stored.vote } ?? false
                if mustWrite {
                    let started = clock.now
                    try storage.persist(entries: rd.entries, hardState: hardState, confState: newConf)
                    deferredHardState = nil
                    if let newConf { persistedConf = newConf }
                    metrics.syncLatency.record(started.duration(to: clock.now))
                    metrics.entriesPersisted.increment(by: Int64(rd.entries.count))
                } else if let hardState, hardState != stored {
                    deferredHardState = hardState
                }
                persistFailures = 0
            } catch let error as StorageError {
                persistFailures += 1
                logger.error("writing to the data directory failed", metadata: ["error": "\(error.message)"])
                node.reportPersistFailure()
                if persistFailures >= 5 {
                    fail(NodeError(.storage, "writing to the data directory keeps failing: \(error.message)"))
                }
                return
            } catch let error as NodeError {
                fail(error)
                return
            } catch {
                fail(NodeError(.storage, "\(error)"))
                return
            }
            for entry in rd.committedEntries[applied...] {
                apply(entry)
                if stopped { return }
            }
            for state in rd.readStates {
                if let context = Self.decode(state.context), reads[context] != nil {
                    reads[context]?.index = state.index
                }
            }
            node.advance()
            // Proposed after the Ready is acknowledged, not in the middle of it.
            if node.role == .leader && machine.settings == nil { maybeProposeBootstrap(now: clock.now) }
        }
        closeBatch()
        answerReads()
        answerWaiters()
        maybeSnapshot()
    }

    /// Opens the page table's batch for the entries of this Ready cycle (`StateMachine.beginBatch`).
    private func openBatch() {
        guard !batchOpen, !stopped else { return }
        do {
            try machine.beginBatch()
            batchOpen = true
        } catch {
            fail(NodeError(.stateMachine, "opening a page-table batch failed: \(error)"))
        }
    }

    /// Commits the batch, if one is open. A failure leaves the page table behind the heap: stop.
    private func closeBatch() {
        guard batchOpen else { return }
        batchOpen = false
        do {
            try machine.endBatch()
        } catch {
            fail(NodeError(.stateMachine, "committing the page table's batch failed: \(error)"))
        }
    }

    // MARK: - Barriers

    /// Calls `resume` on the driver thread once barrier `name` has opened its generation
    /// `generation` on this member (its generation is above it), or with an error when the
    /// member stops. No deadline: a barrier waits for the slowest participant.
    func waitForBarrier(name: String, generation: UInt64, resume: @escaping (Result<Void, APIError>) -> Void) {
        guard !stopped else { return resume(.failure(.unavailable("the member is shutting down"))) }
        barrierWaiters.append(BarrierWaiter(name: name, generation: generation, resume: resume))
        answerBarriers()
    }

    /// Calls `resume` on the driver thread once lock `name` is no longer held at `epoch` on this
    /// member (released, expired by the leader, or taken over), or at `deadline` (success too:
    /// the caller tries again either way). Lets a waiting member try to acquire when it may
    /// succeed instead of proposing acquires on a timer.
    func waitForLock(
        name: String, notHeldAt epoch: UInt64, deadline: ContinuousClock.Instant,
        resume: @escaping (Result<Void, APIError>) -> Void
    ) {
        guard !stopped else { return resume(.failure(.unavailable("the member is shutting down"))) }
        lockWaiters.append(LockWaiter(name: name, epoch: epoch, deadline: deadline, resume: resume))
        answerLocks(now: clock.now)
    }

    private func answerLocks(now: ContinuousClock.Instant) {
        guard !lockWaiters.isEmpty else { return }
        var waiting: [LockWaiter] = []
        for waiter in lockWaiters {
            let state = try? machine.pageTable.lock(company: 0, name: waiter.name)
            if now >= waiter.deadline || !(state?.isHeld(at: waiter.epoch) ?? false) {
                waiter.resume(.success(()))
            } else {
                waiting.append(waiter)
            }
        }
        lockWaiters = waiting
    }

    /// Answers the lock and barrier waiters whose condition now holds on this member.
    private func answerWaiters() {
        answerLocks(now: clock.now)
        answerBarriers()
    }

    private func answerBarriers() {
        guard !barrierWaiters.isEmpty else { return }
        var waiting: [BarrierWaiter] = []
        for waiter in barrierWaiters {
            let state = try? machine.pageTable.barrier(company: 0, name: waiter.name)
            if let state, state.generation > waiter.generation {
                waiter.resume(.success(()))
            } else {
                waiting.append(waiter)
            }
        }
        barrierWaiters = waiting
    }

    private func answerReads() {
        let applied = machine.appliedIndex
        for (context, waiter) in reads {
            if let index = waiter.index, applied >= index {
                reads[context] = nil
                waiter.run(self, nil)
            }
        }
    }

    /// A snapshot from the leader: the leader's term first (Raft needs it durable before the
    /// snapshot), then the snapshot replacing the log, then the state machine from its bytes.
    private func install(_ snapshot: Snapshot, hardState: HardState?) throws {
        if let hs = hardState {
            try storage.persist(hardState: HardState(term: hs.term, vote: hs.vote, commit: storage.hardState.commit))
        }
        try storage.saveSnapshot(snapshot.metadata, data: snapshot.data, replacingLog: true)
        persistedConf = storage.confState
        try restoreMachine(from: snapshot.data)
        snapshotIndex = snapshot.metadata.index
        appliedSinceSnapshot = (0, 0)
        metrics.snapshotsInstalled.increment()
        logger.info("installed a snapshot from the leader", metadata: ["index": "\(snapshot.metadata.index)"])
        // Entries under the snapshot were applied without us seeing their results: a waiter's
        // command may or may not be among them.
        let p = proposals
        proposals = [:]
        for waiter in p.values {
            waiter.resume(.failure(.unavailable("this member caught up by snapshot; the request may or may not have taken effect")))
        }
        afterSettingsKnown()
        refreshPeersFromMembers()
    }

    func restoreMachine(from data: [UInt8]) throws(NodeError) {
        do {
            if data.isEmpty {
                machine = try StateMachine(company: 0, makeHeap: machine.makeHeap)
            } else {
                try machine.restore(from: data)
            }
        } catch {
            throw NodeError(.stateMachine, "restoring the state machine from a snapshot failed: \(error)")
        }
    }

    private func apply(_ entry: Entry) {
        guard entry.index > machine.appliedIndex else { return }
        openBatch()
        if stopped { return }
        if entry.kind == .confChange { applyConfChange(entry) }
        let applied: StateMachine.AppliedEntry
        do {
            applied = try machine.apply(entry)
        } catch {
            fail(NodeError(.stateMachine, "applying entry \(entry.index) failed: \(error)"))
            return
        }
        appliedSinceSnapshot.entries += 1
        appliedSinceSnapshot.bytes += UInt64(entry.data.count)
        if case .bootstrapped = applied.result { afterSettingsKnown() }
        if let waiter = confWaiters.removeValue(forKey: entry.index) {
            if entry.kind == .confChange && entry.data == waiter.data {
                waiter.resume(.success(()))
            } else {
                waiter.resume(.failure(.unavailable("the membership change was lost in a leader change; retry")))
            }
        }
        guard let client = applied.command?.client, client.session == session,
            var waiter = proposals[client.sequence]
        else { return }
        if case .rejected(let rejection) = applied.result,
            rejection.code == .staleRequest || rejection.code == .notBootstrapped
        {
            // A newer request of this session applied first, so this one never did (we would
            // have seen it), or it landed before the bootstrap: propose it again under a fresh
            // sequence.
            proposals[client.sequence] = nil
            let sequence = nextSequence
            nextSequence += 1
            waiter.command.client.sequence = sequence
            waiter.bytes = CommandCodec.encode(waiter.command)
            send(&waiter)
            proposals[sequence] = waiter
            return
        }
        proposals[client.sequence] = nil
        waiter.onApplied?(applied)
        waiter.resume(.success(applied))
    }

    /// The settings became known (bootstrap applied, or a snapshot restored): check them against
    /// an explicit `--heap-size`, record them in the data directory, tell the transport.
    private func afterSettingsKnown() {
        guard let settings = machine.settings else { return }
        if let wanted = configuration.heapSize, wanted != settings.heapSize {
            fail(NodeError(
                .settingsConflict,
                "the cluster's heap size is \(settings.heapSize) bytes but --heap-size asks for \(wanted); "
                    + "start without --heap-size or with the cluster's value"))
            return
        }
        if storage.settings != settings {
            do { try storage.persist(settings: settings) } catch {
                logger.error("recording the cluster settings failed", metadata: ["error": "\(error.message)"])
            }
        }
        transport?.setClusterID(settings.clusterID)
    }

    // MARK: - Membership addresses

    private func applyConfChange(_ entry: Entry) {
        guard let change = ConfChange(encoded: entry.data), machine.settings != nil else { return }
        switch change.kind {
        case .addLearner, .addVoter:
            let address = String(decoding: change.context, as: UTF8.self)
            if !address.isEmpty { setPeerAddress(change.node, address) }
        case .remove:
            if change.node != id, configuration.peers[change.node] == nil { transport?.removePeer(id: change.node) }
        }
        // The addresses live in the page table so that snapshots carry them to members that
        // never see the entry; every member applies the same change, so they stay identical.
        do {
            try MembershipRecord.apply(entry, to: machine)
        } catch {
            logger.error("could not record a membership change in the page table", metadata: ["error": "\(error)"])
        }
    }

    private func setPeerAddress(_ member: NodeID, _ address: String) {
        guard member != id, configuration.peers[member] == nil else { return }
        do {
            try transport?.setPeer(id: member, address: address)
        } catch {
            logger.warning("bad peer address in a membership change", metadata: ["member": "\(member)", "address": "\(address)"])
        }
    }

    /// Points the transport at every member whose address the log recorded (after a restart or
    /// a snapshot install); `--peer` flags win.
    func refreshPeersFromMembers() {
        guard let members = try? machine.pageTable.members(company: 0) else { return }
        for member in members {
            if let address = member.address { setPeerAddress(member.id, address) }
        }
    }

    // MARK: - Snapshots

    private func maybeSnapshot() {
        guard appliedSinceSnapshot.entries >= configuration.snapshotEveryEntries
            || appliedSinceSnapshot.bytes >= configuration.snapshotEveryBytes
        else { return }
        do { _ = try takeSnapshot() } catch {
            logger.error("automatic snapshot failed", metadata: ["error": "\(error)"])
            appliedSinceSnapshot = (0, 0)
        }
    }

    /// Snapshots the state machine at its applied index, makes it durable, and compacts the log
    /// through that index. Returns the snapshot's index.
    func takeSnapshot() throws(APIError) -> UInt64 {
        let index = machine.appliedIndex
        guard index > snapshotIndex else { return snapshotIndex }
        guard let term = node.term(at: index) else {
            throw .unavailable("the term of applied entry \(index) is unknown")
        }
        do {
            let data = try machine.snapshot()
            let metadata = SnapshotMetadata(index: index, term: term, confState: node.confState(at: index))
            try storage.saveSnapshot(metadata, data: data)
            let point = Self.compactionPoint(
                snapshotIndex: index, tail: configuration.snapshotTail, firstIndex: node.firstIndex
            ) { lo, hi in node.entries(from: lo, to: hi) }
            // Only entries under the stored commit index may be compacted.
            try writeDeferredHardState()
            // Compacting at or below the compacted index does nothing.
            try storage.compact(through: point)
        } catch {
            throw .unavailable("taking a snapshot failed: \(error)")
        }
        snapshotIndex = index
        appliedSinceSnapshot = (0, 0)
        metrics.snapshotsTaken.increment()
        logger.info("snapshot taken", metadata: ["index": "\(index)"])
        return index
    }

    /// Writes the commit index that `processReady` left for later, if any (one synced write).
    private func writeDeferredHardState() throws(StorageError) {
        guard let hardState = deferredHardState else { return }
        try storage.persist(hardState: hardState)
        deferredHardState = nil
    }

    /// Where to compact after a snapshot at `snapshotIndex`: keep a short tail of entries (for
    /// followers just behind, and for the log tool), unless a membership change is in it. The
    /// core rebuilds the membership from the snapshot's plus the changes in the log after the
    /// compaction point, so none may sit between the compaction point and the snapshot.
    static func compactionPoint(
        snapshotIndex: UInt64, tail: UInt64, firstIndex: UInt64, entries: (UInt64, UInt64) -> [Entry]?
    ) -> UInt64 {
        let point = snapshotIndex > tail ? snapshotIndex - tail : 0
        let lo = max(point + 1, firstIndex)
        guard lo <= snapshotIndex else { return point }
        guard let kept = entries(lo, snapshotIndex + 1), kept.count == Int(snapshotIndex + 1 - lo),
            !kept.contains(where: { $0.kind == .confChange })
        else { return snapshotIndex }
        return point
    }

    // MARK: - Published view

    func publish() {
        let role: String
        if node.learners.contains(id) {
            role = "learner"
        } else {
            switch node.role {
            case .leader: role = "leader"
            case .follower: role = "follower"
            case .candidate: role = "candidate"
            case .preCandidate: role = "precandidate"
            }
        }
        var v = View()
        v.role = role
        v.term = node.term
        v.leader = node.leader
        v.commitIndex = node.committed
        v.appliedIndex = machine.appliedIndex
        v.lastIndex = node.lastIndex
        v.snapshotIndex = snapshotIndex
        v.members = (node.voters + node.learners).sorted()
        v.bootstrapped = machine.settings != nil
        published.withLock { $0 = v }
        metrics.term.set(to: Double(v.term))
        metrics.isLeader.set(to: role == "leader" ? 1.0 : 0.0)
        metrics.role.set(to: ["follower": 0.0, "precandidate": 1.0, "candidate": 2.0, "leader": 3.0, "learner": 4.0][role] ?? 0.0)
        metrics.commitIndex.set(to: Double(v.commitIndex))
        metrics.appliedIndex.set(to: Double(v.appliedIndex))
        metrics.applyLag.set(to: Double(v.commitIndex &- min(v.appliedIndex, v.commitIndex)))
        metrics.snapshotIndex.set(to: Double(v.snapshotIndex))
    }
}
