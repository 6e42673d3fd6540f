/// The answer of `GET /v1/status` (contract section 2).
struct NodeStatus: Sendable, Decodable {
    var id: Int
    /// `leader`, `follower`, `candidate`, `precandidate` or `learner`.
    var role: String
    var term: UInt64
    var leader: Int?
    var commitIndex: UInt64
    var appliedIndex: UInt64
    var lastIndex: UInt64
    var snapshotIndex: UInt64
    /// The contract does not fix the shape of a member entry; see `memberIDs`.
    var members: JSONValue?

    /// Member ids, whether the node lists them as numbers or as objects with an `id`.
    var memberIDs: [Int] {
        (members?.array ?? []).compactMap { $0.integer ?? $0["id"]?.integer }.sorted()
    }

    var isLeader: Bool { role == "leader" }
}
