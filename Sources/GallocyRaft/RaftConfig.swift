/// How a `RaftNode` behaves. Every timing is counted in ticks: the host decides what a tick is.
public struct RaftConfig: Sendable, Hashable {
    /// This member's id (never 0).
    public var id: NodeID
    /// A follower that hears nothing from a leader for a random number of ticks in
    /// [electionTick, 2 * electionTick) starts an election.
    public var electionTick: Int
    /// A leader sends heartbeats every `heartbeatTick` ticks; must be well below `electionTick`.
    public var heartbeatTick: Int
    /// The most entry bytes in one append message (at least one entry is always sent).
    public var maxSizePerMsg: Int
    /// The most append messages in flight to one follower (pipelining window).
    public var maxInflightMsgs: Int
    /// The most entry bytes in flight to one follower; 0 means no limit beyond `maxInflightMsgs`.
    public var maxInflightBytes: Int
    /// The most entry bytes handed to the host to apply in one `Ready` (at least one entry).
    public var maxApplyBytesPerReady: Int
    /// A candidate first asks whether it could win (pre-vote) so that a partitioned member that
    /// comes back does not force the term up and depose a working leader.
    public var preVote: Bool
    /// A leader that has not heard from a quorum within an election timeout steps down, and a
    /// follower that hears from a leader ignores vote requests during that time (leader lease).
    public var checkQuorum: Bool
    /// The size of the pieces in which a snapshot is sent to a follower.
    public var snapshotChunkSize: Int
    /// Seeds the randomised election timeouts: the only randomness in the core.
    public var seed: UInt64
    /// The index the host's state machine has applied at start (0: the snapshot's index).
    public var applied: UInt64

    public init(
        id: NodeID, electionTick: Int = 10, heartbeatTick: Int = 1, maxSizePerMsg: Int = 1 << 20,
        maxInflightMsgs: Int = 256, maxInflightBytes: Int = 0, maxApplyBytesPerReady: Int = 64 << 20,
        preVote: Bool = true, checkQuorum: Bool = true, snapshotChunkSize: Int = 1 << 20, seed: UInt64 = 0,
        applied: UInt64 = 0
    ) {
        self.id = id
        self.electionTick = electionTick
        self.heartbeatTick = heartbeatTick
        self.maxSizePerMsg = maxSizePerMsg
        self.maxInflightMsgs = maxInflightMsgs
        self.maxInflightBytes = maxInflightBytes
        self.maxApplyBytesPerReady = maxApplyBytesPerReady
        self.preVote = preVote
        self.checkQuorum = checkQuorum
        self.snapshotChunkSize = snapshotChunkSize
        self.seed = seed
        self.applied = applied
    }
}

/// SplitMix64: a tiny, fast, seedable generator, so that runs replay exactly from a seed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
