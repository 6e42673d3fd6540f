// The data types the Raft core exchanges with its host: entries, hard state, messages and
// snapshot metadata. They are plain values so that the codec (GallocyCodec) can encode them and
// storage (GallocyStorage) can persist them without the core knowing about either.
//
// Adding a field: give it a default value and extend `GallocyCodec`'s encoder and decoder for it
// (the message format carries a version, so old peers are refused rather than misread).

/// A member's id within one Raft group. 0 means "nobody".
public typealias NodeID = UInt64

/// One entry of the replicated log.
public struct Entry: Sendable, Hashable {
    /// What an entry carries. The raw values are part of the on-disk format: never renumber.
    public enum Kind: UInt8, Sendable, Hashable, CaseIterable {
        /// Application data, opaque to the core.
        case normal = 0
        /// A membership change; `data` is a `ConfChange` in the core's own encoding.
        case confChange = 1
    }

    public var term: UInt64
    public var index: UInt64
    public var kind: Kind
    public var data: [UInt8]

    public init(term: UInt64, index: UInt64, kind: Kind = .normal, data: [UInt8] = []) {
        self.term = term
        self.index = index
        self.kind = kind
        self.data = data
    }
}

/// The state a member must persist before it answers anyone: its term, its vote in that term and
/// the highest index it knows to be committed.
public struct HardState: Sendable, Hashable {
    public var term: UInt64
    /// The member voted for in `term`, or 0 for none.
    public var vote: NodeID
    public var commit: UInt64

    public init(term: UInt64 = 0, vote: NodeID = 0, commit: UInt64 = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }

    public static let empty = HardState()
}

/// The membership of a group as of some index.
public struct ConfState: Sendable, Hashable {
    /// Members whose votes count (the incoming configuration during a joint change).
    public var voters: [NodeID]
    /// Members that receive the log but do not vote.
    public var learners: [NodeID]
    /// The outgoing configuration while a joint change is in progress; empty otherwise.
    public var votersOutgoing: [NodeID]

    public init(voters: [NodeID] = [], learners: [NodeID] = [], votersOutgoing: [NodeID] = []) {
        self.voters = voters
        self.learners = learners
        self.votersOutgoing = votersOutgoing
    }
}

/// What a snapshot stands for: the state as of `index` (whose term is `term`), with the
/// membership in force at that index.
public struct SnapshotMetadata: Sendable, Hashable {
    public var index: UInt64
    public var term: UInt64
    public var confState: ConfState

    public init(index: UInt64 = 0, term: UInt64 = 0, confState: ConfState = ConfState()) {
        self.index = index
        self.term = term
        self.confState = confState
    }
}

/// One piece of a snapshot in transit from a leader to a follower. A follower assembles the
/// chunks of one snapshot (same metadata) in offset order; the last chunk has `done` set.
public struct SnapshotChunk: Sendable, Hashable {
    public var metadata: SnapshotMetadata
    /// Byte offset of `data` within the whole snapshot.
    public var offset: UInt64
    /// Size in bytes of the whole snapshot.
    public var totalSize: UInt64
    public var data: [UInt8]
    public var done: Bool

    public init(metadata: SnapshotMetadata, offset: UInt64, totalSize: UInt64, data: [UInt8], done: Bool) {
        self.metadata = metadata
        self.offset = offset
        self.totalSize = totalSize
        self.data = data
        self.done = done
    }
}

/// The kinds of message members send each other. The raw values are part of the wire format:
/// never renumber.
public enum MessageType: UInt8, Sendable, Hashable, CaseIterable {
    case append = 1
    case appendResponse = 2
    case vote = 3
    case voteResponse = 4
    case preVote = 5
    case preVoteResponse = 6
    case heartbeat = 7
    case heartbeatResponse = 8
    /// A chunk of a snapshot (`snapshot` is set).
    case snapshot = 9
    /// Acknowledges a snapshot chunk (or rejects the transfer with `reject`).
    case snapshotResponse = 10
    /// Tells the transfer target to start an election at once.
    case timeoutNow = 11
    /// A follower asks the leader for a read index; `context` identifies the request.
    case readIndex = 12
    case readIndexResponse = 13
    /// A follower forwards proposals (`entries`) to the leader.
    case propose = 14
    /// A member asks the leader to hand leadership to `index` (reused as the target id).
    case transferLeader = 15
}

/// A message between two members of one Raft group. Which fields are meaningful depends on
/// `type`; unused ones keep their zero values (and cost a byte or so on the wire).
public struct Message: Sendable, Hashable {
    public var type: MessageType
    public var from: NodeID
    public var to: NodeID
    public var term: UInt64
    /// Term of the entry at `index` (append: the entry before `entries`; vote: the candidate's
    /// last entry).
    public var logTerm: UInt64
    public var index: UInt64
    public var entries: [Entry]
    public var commit: UInt64
    public var reject: Bool
    /// On a rejected append: the follower's hint at where the logs may agree.
    public var rejectHint: UInt64
    /// On a rejected append: the term of the follower's entry at `rejectHint`, for fast back-off.
    public var hintTerm: UInt64
    /// Opaque bytes carried for the host (ReadIndex request ids, transfer reasons).
    public var context: [UInt8]
    public var snapshot: SnapshotChunk?

    public init(
        type: MessageType, from: NodeID = 0, to: NodeID = 0, term: UInt64 = 0, logTerm: UInt64 = 0,
        index: UInt64 = 0, entries: [Entry] = [], commit: UInt64 = 0, reject: Bool = false,
        rejectHint: UInt64 = 0, hintTerm: UInt64 = 0, context: [UInt8] = [], snapshot: SnapshotChunk? = nil
    ) {
        self.type = type
        self.from = from
        self.to = to
        self.term = term
        self.logTerm = logTerm
        self.index = index
        self.entries = entries
        self.commit = commit
        self.reject = reject
        self.rejectHint = rejectHint
        self.hintTerm = hintTerm
        self.context = context
        self.snapshot = snapshot
    }
}
