extension NodeStatus {
    /// The `GET /v1/status` answer with the contract's field names; `leader` is null when unknown.
    package var json: JSONValue {
        .object([
            "id": .uint(id),
            "role": .string(role),
            "term": .uint(term),
            "leader": leader.map(JSONValue.uint) ?? .null,
            "commit_index": .uint(commitIndex),
            "applied_index": .uint(appliedIndex),
            "last_index": .uint(lastIndex),
            "snapshot_index": .uint(snapshotIndex),
            "members": .array(members.map(JSONValue.uint)),
        ])
    }
}
