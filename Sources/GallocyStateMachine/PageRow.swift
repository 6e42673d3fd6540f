import GallocyCodec

/// One row of the page table as `GET /v1/pages` shows it. Pages without a stored row are shown
/// as `.zero` with no writer.
package struct PageRow: Sendable, Hashable {
    /// What a page holds.
    package enum State: String, Sendable, Hashable {
        /// Plain zero memory: never allocated, or every block on it was freed.
        case zero
        /// At least one allocated block overlaps the page.
        case allocated
    }

    package var company: Company
    package var page: UInt64
    /// The heap address of the page's first byte.
    package var address: UInt64
    package var state: State
    /// How many allocated blocks overlap the page.
    package var blocks: UInt64
    package var lastWriter: UInt64?
    package var lastWriteIndex: UInt64?
    package var writeCount: UInt64
    /// Page-lease mode: the member holding the write lease, its epoch and expiry.
    package var leaseHolder: UInt64?
    package var leaseEpoch: UInt64
    package var leaseExpiresAt: UInt64?

    package init(
        company: Company, page: UInt64, address: UInt64, state: State = .zero, blocks: UInt64 = 0,
        lastWriter: UInt64? = nil, lastWriteIndex: UInt64? = nil, writeCount: UInt64 = 0,
        leaseHolder: UInt64? = nil, leaseEpoch: UInt64 = 0, leaseExpiresAt: UInt64? = nil
    ) {
        self.company = company
        self.page = page
        self.address = address
        self.state = state
        self.blocks = blocks
        self.lastWriter = lastWriter
        self.lastWriteIndex = lastWriteIndex
        self.writeCount = writeCount
        self.leaseHolder = leaseHolder
        self.leaseEpoch = leaseEpoch
        self.leaseExpiresAt = leaseExpiresAt
    }
}
