/// One endpoint of the HTTP API (`../shared/CONTRACT.md` section 2) with what its method, path and
/// query carry. Parsed from the request head (see `APIRoute+Parsing.swift`) before any body is
/// read, so that the body limit and errors in the path are known up front.
package enum APIRoute: Sendable, Hashable {
    /// `GET /v1/status`
    case status
    /// `POST /v1/alloc` `{"size": n}`
    case alloc
    /// `POST /v1/free` `{"addr": "0x..."}`
    case free
    /// `PUT /v1/memory/<addr>` with raw bytes.
    case writeMemory(address: UInt64)
    /// `GET /v1/memory/<addr>?len=<n>`
    case readMemory(address: UInt64, length: Int)
    /// `POST /v1/atomic/<addr>` `{"op": ..., "expect": a, "value": b}`
    case atomic(address: UInt64)
    /// `POST /v1/locks/<name>/acquire` `{"ttl_ms": t, "wait_ms": w}`
    case lockAcquire(name: String)
    /// `POST /v1/locks/<name>/release` `{"epoch": e}`
    case lockRelease(name: String)
    /// `GET /v1/pages?from=<addr>&count=<n>`
    case pages(from: UInt64, count: Int)
    /// `POST /v1/snapshot`
    case snapshot
    /// `POST /v1/leader/transfer` `{"to": id}`
    case leaderTransfer
    /// `POST /v1/members` `{"add": {"id": n, "peer": "host:port"}}` or `{"remove": n}`
    case members
    /// `GET /metrics`
    case metrics

    /// Whether the body is raw bytes (memory writes) rather than a JSON document: it decides the
    /// body size limit.
    package var takesRawBody: Bool {
        if case .writeMemory = self { return true }
        return false
    }

    /// A short name of the endpoint, for metrics and logs.
    package var endpoint: String {
        switch self {
        case .status: "status"
        case .alloc: "alloc"
        case .free: "free"
        case .writeMemory: "memory_write"
        case .readMemory: "memory_read"
        case .atomic: "atomic"
        case .lockAcquire: "lock_acquire"
        case .lockRelease: "lock_release"
        case .pages: "pages"
        case .snapshot: "snapshot"
        case .leaderTransfer: "leader_transfer"
        case .members: "members"
        case .metrics: "metrics"
        }
    }
}
