/// What a leader knows of one follower's log, and how it feeds it.
public struct Progress: Sendable {
    public enum State: Sendable, Hashable {
        /// One append at a time, probing for where the logs agree.
        case probe
        /// Optimistic pipelining: appends sent back to back, within the inflight window.
        case replicate
        /// Receiving a snapshot, in chunks.
        case snapshot
    }

    public internal(set) var match: UInt64 = 0
    public internal(set) var next: UInt64
    public internal(set) var state: State = .probe
    public internal(set) var isLearner: Bool
    /// The follower answered within the current election timeout (check-quorum).
    public internal(set) var recentActive = false
    /// The snapshot index being sent, in `.snapshot` state.
    public internal(set) var pendingSnapshot: UInt64 = 0

    var inflights: Inflights
    /// Append messages sent and not yet acknowledged (flow control), and their entry bytes.
    public var inflightMessages: Int { inflights.count }
    public var inflightBytes: Int { inflights.bytes }
    /// In `.probe`: an append is out and unanswered.
    var probeSent = false
    /// `match` when the last heartbeat answer came: no progress between two of them while
    /// appends are in flight means they were lost.
    var matchAtLastHeartbeat: UInt64 = 0
    var stalledHeartbeats = 0
    /// The snapshot being streamed, and how many of its bytes the follower has acknowledged.
    var snapshotInTransit: Snapshot?
    var snapshotAcked: UInt64 = 0
    /// The end of the chunks sent so far.
    var snapshotSent: UInt64 = 0

    init(next: UInt64, isLearner: Bool, maxInflightMsgs: Int, maxInflightBytes: Int) {
        self.next = next
        self.isLearner = isLearner
        inflights = Inflights(maxCount: maxInflightMsgs, maxBytes: maxInflightBytes)
    }

    var isPaused: Bool {
        switch state {
        case .probe: return probeSent
        case .replicate: return inflights.isFull
        case .snapshot: return true
        }
    }

    mutating func resetState(_ state: State) {
        probeSent = false
        pendingSnapshot = 0
        snapshotInTransit = nil
        snapshotAcked = 0
        snapshotSent = 0
        self.state = state
        inflights.reset()
    }

    mutating func becomeProbe() {
        if state == .snapshot {
            let pending = pendingSnapshot
            resetState(.probe)
            next = max(match + 1, pending + 1)
        } else {
            resetState(.probe)
            next = match + 1
        }
    }

    mutating func becomeReplicate() {
        resetState(.replicate)
        next = match + 1
    }

    mutating func becomeSnapshot(_ snapshot: Snapshot) {
        resetState(.snapshot)
        pendingSnapshot = snapshot.metadata.index
        snapshotInTransit = snapshot
    }

    /// The follower acknowledged up to `index`; false if that is old news.
    mutating func maybeUpdate(_ index: UInt64) -> Bool {
        var updated = false
        if match < index {
            match = index
            updated = true
            probeSent = false
        }
        next = max(next, index + 1)
        return updated
    }

    /// An append was sent, carrying entries up to `last` (if any) and `bytes` of them.
    mutating func sentEntries(last: UInt64?, bytes: Int) {
        switch state {
        case .replicate:
            if let last {
                next = last + 1
                inflights.add(index: last, bytes: bytes)
            }
        case .probe:
            probeSent = true
        case .snapshot:
            break
        }
    }

    /// The follower rejected an append whose previous entry was `rejected`; `hint` is where the
    /// logs may agree. False if the rejection is stale (reordered or duplicated).
    mutating func maybeDecrease(rejected: UInt64, hint: UInt64) -> Bool {
        if state == .replicate {
            guard rejected > match else { return false }
            next = match + 1
            return true
        }
        guard next >= 1, next - 1 == rejected else { return false }
        next = max(min(rejected, hint + 1), match + 1)
        probeSent = false
        return true
    }
}
