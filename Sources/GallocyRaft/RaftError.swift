/// Why the core refused a request from its host.
public enum RaftError: Error, Sendable, Hashable {
    /// No leader is known, so the request cannot be served or forwarded; retry later.
    case noLeader
    /// Only the leader can do this (membership changes are proposed on the leader).
    case notLeader(leader: NodeID)
    /// A leadership transfer is under way: proposals wait until it ends.
    case transferInProgress
    /// A membership change is still uncommitted, or the leader has not yet committed an entry of
    /// its own term: one change at a time (see docs/raft.md).
    case confChangePending
    /// The membership change makes no sense against the current configuration.
    case invalidConfChange(String)
    /// A learner may become a voter only once it has caught up with the commit index.
    case learnerNotCaughtUp
}
