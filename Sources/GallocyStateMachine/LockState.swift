import GallocyCodec

/// The state of one lock. A released or expired lock has no holder but keeps its epoch, so that
/// the next grant gets a higher one.
package struct LockState: Sendable, Hashable {
    package var company: Company
    package var name: String
    package var holder: UInt64?
    /// The epoch of the latest grant; 0 never happens for a stored lock (the first grant is 1).
    package var epoch: UInt64
    /// When the current lease runs out, in leader milliseconds; nil when not held.
    package var expiresAt: UInt64?
    /// The log index of the latest grant.
    package var grantedIndex: UInt64?

    package init(company: Company, name: String, holder: UInt64?, epoch: UInt64, expiresAt: UInt64?, grantedIndex: UInt64?) {
        self.company = company
        self.name = name
        self.holder = holder
        self.epoch = epoch
        self.expiresAt = expiresAt
        self.grantedIndex = grantedIndex
    }

    /// Whether the lock is held at `epoch`.
    package func isHeld(at epoch: UInt64) -> Bool { holder != nil && self.epoch == epoch }
}
