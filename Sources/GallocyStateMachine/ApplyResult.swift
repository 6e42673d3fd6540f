/// What applying one committed command did, as the client that proposed it needs to hear it.
/// Every member computes the same result for the same entry, so the member that answers the
/// client can be any of them. A committed command that is not valid (freeing an address that is
/// not allocated, a stale lock epoch) is not a Swift error: it is `.rejected`, and it changed
/// nothing in the page table.
package enum ApplyResult: Sendable, Hashable {
    /// The cluster settings are recorded (or a repeated bootstrap carried the same settings).
    case bootstrapped
    /// A no-op entry.
    case noop
    /// A block of the requested size starts at `address`.
    case allocated(address: UInt64)
    /// The block at `address` was freed; it occupied `extent` bytes (its size rounded up to 8).
    /// Free memory reads as zero, so the heap image zeroes those bytes: `zeroedPages` (page
    /// numbers, possibly empty) are the pages no block overlaps any more, which it may discard
    /// whole; the rest of the extent shares its first or last page with other blocks.
    case freed(address: UInt64, extent: UInt64, zeroedPages: Range<UInt64>)
    /// The pages of a write are recorded; `releasedLock` says whether the write released a lock.
    case written(pages: Int, releasedLock: Bool)
    /// An atomic operation's address is valid; the heap image performs the operation.
    case atomicAccepted(address: UInt64)
    /// An atomic operation was performed on the word (8 bytes, little-endian) at its address:
    /// `old` is the word before it; `ok` is false only for a compare-and-swap whose expected
    /// value did not match (then the word is unchanged). The state machine turns the page
    /// table's `.atomicAccepted` into this once the heap has done the operation, and this is
    /// what a retried request gets again.
    case atomic(ok: Bool, old: UInt64)
    /// The lock is held by the proposer at `epoch` until `expiresAt` (leader milliseconds).
    case lockGranted(epoch: UInt64, expiresAt: UInt64)
    /// The lock is held by `holder` at `epoch` until `expiresAt`; the acquire did not take it.
    case lockBusy(holder: UInt64, epoch: UInt64, expiresAt: UInt64)
    /// The lock was released.
    case lockReleased
    /// The lease of the lock ran out and the lock is free again.
    case lockExpired
    /// An arrival at a barrier was counted in `generation`; `opened` says whether it was the
    /// last one, which opened the barrier (its generation is now `generation + 1`).
    case barrier(opened: Bool, generation: UInt64)
    /// The named root was set (or removed, for address 0).
    case rootSet
    /// A lease command applied: the state of the page's write lease after it. `holder` nil: no
    /// holder, every member may read the page (`grant` is then the last grant, 0 if none).
    case lease(page: UInt64, holder: UInt64?, grant: UInt64, expiresAt: UInt64)
    /// The command was committed but is not valid; it changed nothing.
    case rejected(Rejection)

    /// False only for `.rejected`. A busy lock is a valid outcome of an acquire, not a failure.
    package var isApplied: Bool {
        if case .rejected = self { return false }
        return true
    }

    /// The reason, when the command was rejected.
    package var rejection: Rejection? {
        if case .rejected(let rejection) = self { return rejection }
        return nil
    }
}

/// Why a committed command changed nothing. `code` is what the HTTP layer maps to a status
/// (see the doc comment of each code); `message` is for the person reading the answer.
package struct Rejection: Sendable, Hashable, CustomStringConvertible {
    package enum Code: UInt8, Sendable, Hashable, CaseIterable {
        /// The company has no bootstrap entry yet (503: not ready).
        case notBootstrapped = 1
        /// A second bootstrap with different settings (409).
        case settingsConflict = 2
        /// Bootstrap settings that cannot describe a heap (400).
        case invalidSettings = 3
        /// An allocation of zero bytes (400).
        case zeroSize = 4
        /// No free range of the heap is large enough (413).
        case outOfSpace = 5
        /// No block starts at the freed address (404).
        case notAllocated = 6
        /// A write or an atomic reaches memory that is not allocated (400).
        case outsideAllocation = 7
        /// An atomic word that is not 8-byte aligned (400).
        case misaligned = 8
        /// A lock release, expiry or releasing write named an epoch that no longer holds the
        /// lock (409).
        case staleEpoch = 9
        /// A barrier arrival with a participant count that differs from the other arrivals of
        /// its generation, or of zero (400).
        case participantsMismatch = 10
        /// A request of a session older than the last one applied for it: its answer was
        /// already given and is no longer remembered (409).
        case staleRequest = 11
        /// A root address outside the heap, or another argument out of range (400).
        case invalidArgument = 12
        /// The entry's data is not a command this build can decode, or a write carries a page
        /// diff that does not fit its page (400). Every member decodes the same bytes the same
        /// way, so every member rejects it alike.
        case malformedCommand = 13
    }

    package var code: Code
    package var message: String

    package init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    package var description: String { "\(code): \(message)" }

    /// The HTTP status that fits (CONTRACT.md section 2); the HTTP layer decides.
    package var suggestedHTTPStatus: Int {
        switch code {
        case .notBootstrapped: return 503
        case .settingsConflict, .staleEpoch, .staleRequest: return 409
        case .outOfSpace: return 413
        case .notAllocated: return 404
        case .invalidSettings, .zeroSize, .outsideAllocation, .misaligned, .participantsMismatch, .invalidArgument,
            .malformedCommand:
            return 400
        }
    }
}
