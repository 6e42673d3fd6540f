import GallocyCodec

/// What the HTTP API asks of a member. The engine (`Node`) implements it; the HTTP layer only
/// parses requests, calls these, and renders answers or `APIError`s as the contract says
/// (`../shared/CONTRACT.md` section 2). Every call returns within `deadline` or fails with a
/// 503/504 `APIError`.
package protocol NodeService: Sendable {
    func status() async -> NodeStatus
    /// Allocates `size` bytes; returns the block's address once the allocation is committed.
    func alloc(size: UInt64) async throws(APIError) -> UInt64
    /// Frees the block starting at `address` (404 `not_allocated` if none starts there).
    func free(address: UInt64) async throws(APIError)
    /// Writes `bytes` at `address` (all inside one allocated range, else 400); returns the log
    /// index of the committed write.
    func write(address: UInt64, bytes: [UInt8]) async throws(APIError) -> UInt64
    /// Linearizable read of `length` bytes at `address`.
    func read(address: UInt64, length: Int) async throws(APIError) -> [UInt8]
    /// An atomic operation on the 8-byte word at `address`; returns whether it took effect
    /// (always true for add and swap) and the word's previous value.
    func atomic(address: UInt64, op: AtomicOp) async throws(APIError) -> (ok: Bool, old: UInt64)
    /// Acquires lock `name` for `ttlMillis`, waiting up to `waitMillis` (409 if not granted).
    func lockAcquire(name: String, ttlMillis: UInt64, waitMillis: UInt64) async throws(APIError) -> UInt64
    /// Releases lock `name` held at `epoch` (409 if that lease expired or was taken over).
    func lockRelease(name: String, epoch: UInt64) async throws(APIError)
    /// Page table rows for `count` pages from the page containing `from`, as JSON objects.
    func pages(from: UInt64, count: Int) async throws(APIError) -> [[String: JSONValue]]
    /// Takes a snapshot; returns its index once it is durable on this member.
    func snapshot() async throws(APIError) -> UInt64
    /// Returns once member `to` is the leader.
    func transferLeader(to: UInt64) async throws(APIError)
    /// Adds member `id` reachable for peer traffic at `peer` ("host:port"); returns once committed.
    func addMember(id: UInt64, peer: String) async throws(APIError)
    /// Removes member `id`; returns once committed.
    func removeMember(id: UInt64) async throws(APIError)
    /// The Prometheus text exposition of this member's metrics.
    func metricsText() async -> String

    /// `write(address:bytes:)` without a Swift task: calls `done` exactly once, on any thread.
    /// Returns false, and never calls `done`, when the service has no such path (the caller then
    /// uses the async call). The HTTP API uses it for its hottest request: no task to create and
    /// no hop through the concurrency pool on the way back.
    func write(address: UInt64, bytes: [UInt8], done: @escaping @Sendable (Result<UInt64, APIError>) -> Void) -> Bool
    /// `read(address:length:)` without a Swift task, as `write(address:bytes:done:)`.
    func read(address: UInt64, length: Int, done: @escaping @Sendable (Result<[UInt8], APIError>) -> Void) -> Bool
}

extension NodeService {
    package func write(
        address: UInt64, bytes: [UInt8], done: @escaping @Sendable (Result<UInt64, APIError>) -> Void
    ) -> Bool { false }

    package func read(
        address: UInt64, length: Int, done: @escaping @Sendable (Result<[UInt8], APIError>) -> Void
    ) -> Bool { false }
}

/// The answer to `GET /v1/status`.
package struct NodeStatus: Sendable, Hashable {
    package var id: UInt64
    /// One of leader, follower, candidate, precandidate, learner.
    package var role: String
    package var term: UInt64
    package var leader: UInt64?
    package var commitIndex: UInt64
    package var appliedIndex: UInt64
    package var lastIndex: UInt64
    package var snapshotIndex: UInt64
    package var members: [UInt64]

    package init(
        id: UInt64, role: String, term: UInt64, leader: UInt64?, commitIndex: UInt64, appliedIndex: UInt64,
        lastIndex: UInt64, snapshotIndex: UInt64, members: [UInt64]
    ) {
        self.id = id
        self.role = role
        self.term = term
        self.leader = leader
        self.commitIndex = commitIndex
        self.appliedIndex = appliedIndex
        self.lastIndex = lastIndex
        self.snapshotIndex = snapshotIndex
        self.members = members
    }
}

/// An error answer: rendered as `{"error": message, "code": code}` with `status`.
package struct APIError: Error, Sendable, Hashable, CustomStringConvertible {
    package var status: Int
    /// A lowercase word a program can match (not_found, conflict, no_quorum, timeout, ...).
    package var code: String
    package var message: String

    package init(status: Int, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    package var description: String { "\(status) \(code): \(message)" }

    package static func badRequest(_ message: String) -> APIError { APIError(status: 400, code: "bad_request", message: message) }
    package static func notFound(_ message: String) -> APIError { APIError(status: 404, code: "not_found", message: message) }
    package static func conflict(_ message: String) -> APIError { APIError(status: 409, code: "conflict", message: message) }
    package static func tooLarge(_ message: String) -> APIError { APIError(status: 413, code: "too_large", message: message) }
    package static func unavailable(_ message: String) -> APIError { APIError(status: 503, code: "unavailable", message: message) }
    package static func timeout(_ message: String) -> APIError { APIError(status: 504, code: "timeout", message: message) }
}

/// A JSON value, for answers whose shape is data-driven (page table rows).
package enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])
}
