/// A member of a company's Raft group as the page table records it (`PageTable.setMembers`).
package struct Member: Sendable, Hashable {
    package var id: UInt64
    /// For example `voter` or `learner`; free text for the engine.
    package var role: String?
    /// The member's peer address, `host:port`.
    package var address: String?

    package init(id: UInt64, role: String? = nil, address: String? = nil) {
        self.id = id
        self.role = role
        self.address = address
    }
}
