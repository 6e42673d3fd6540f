/// A member's role.
public enum RaftRole: Sendable, Hashable {
    case follower
    case preCandidate
    case candidate
    case leader
}

/// Volatile state the host may want to show or act on; not persisted.
public struct SoftState: Sendable, Hashable {
    public var role: RaftRole
    public var leader: NodeID

    public init(role: RaftRole, leader: NodeID) {
        self.role = role
        self.leader = leader
    }
}

/// What the host must do next. In this order: persist `snapshot`, `entries` and `hardState`
/// (one durable write), apply `committedEntries` (after the write: they may be among `entries`),
/// answer `readStates` once applied up to their index, send `messages` (these may also go
/// before the write: anything that depends on durable state is held back by the core until
/// `advance()` confirms the write), then call `advance()`.
public struct Ready: Sendable {
    /// Set when the role or the leader changed.
    public var softState: SoftState?
    /// Set when it changed; persist before anything else of this Ready is acknowledged.
    public var hardState: HardState?
    /// Entries to append to the durable log (replacing any from the first one's index on).
    public var entries: [Entry] = []
    /// A snapshot from the leader to install (persist and load into the state machine).
    public var snapshot: Snapshot?
    /// Committed entries to apply, in order. Entries of kind `.normal` with empty data are the
    /// no-ops of new leaders: apply them as nothing.
    public var committedEntries: [Entry] = []
    /// Messages to send.
    public var messages: [Message] = []
    /// Linearizable reads ready to be answered.
    public var readStates: [ReadState] = []

    /// True if the host has nothing to write (it may then skip the sync).
    public var needsPersistence: Bool { hardState != nil || !entries.isEmpty || snapshot != nil }
}
