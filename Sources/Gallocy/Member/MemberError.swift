/// Why a call of the in-process member (`Member`) failed. `code` can be matched; `message` says
/// what happened and, where there is one, what to do.
public struct MemberError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        /// The options are malformed or inconsistent (a bad address, id, size).
        case invalidOptions
        /// The member could not start: its data directory, its listeners, the heap's mapping.
        case startFailed
        /// The heap's base address range is already mapped in this process.
        case heapBaseInUse
        /// No leader is reachable, or the member is shutting down; the call may be retried.
        case unavailable
        /// The call was not committed in time; it may or may not have taken effect.
        case timeout
        /// The lock's lease ran out before its release (or the lock was taken over): the
        /// release was rejected and its writes were not published (they are undone here too).
        case leaseExpired
        /// The lock is held by another member (only when a bounded wait was asked for).
        case lockBusy
        /// The address is not the start of an allocated block.
        case notAllocated
        /// The heap has no free range large enough.
        case outOfSpace
        /// An argument is invalid (a misaligned word, a range outside the heap or outside
        /// allocated memory, a barrier joined with another participant count).
        case invalidArgument
        /// The member has stopped.
        case stopped
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

    /// The member's answer for an engine error (`APIError`, as the HTTP API would render it).
    init(_ error: APIError) {
        switch (error.status, error.code) {
        case (_, "stale_epoch"): self.init(.leaseExpired, error.message)
        case (_, "not_allocated"): self.init(.notAllocated, error.message)
        case (_, "out_of_space"): self.init(.outOfSpace, error.message)
        case (504, _): self.init(.timeout, error.message)
        case (503, _): self.init(.unavailable, error.message)
        case (409, _): self.init(.lockBusy, error.message)
        default: self.init(.invalidArgument, error.message)
        }
    }
}
