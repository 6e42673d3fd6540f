import GallocyCodec

/// An allocated block of the heap.
package struct Allocation: Sendable, Hashable {
    package var company: Company
    package var address: UInt64
    /// The size that was asked for; the block occupies it rounded up to 8 bytes.
    package var size: UInt64
    package var member: UInt64
    /// The log index of the entry that allocated it.
    package var allocatedIndex: UInt64

    package init(company: Company, address: UInt64, size: UInt64, member: UInt64, allocatedIndex: UInt64) {
        self.company = company
        self.address = address
        self.size = size
        self.member = member
        self.allocatedIndex = allocatedIndex
    }

    /// One past the last byte the caller may use.
    package var end: UInt64 { address + size }

    /// Whether [address, address + length) lies inside the block.
    package func contains(_ address: UInt64, length: UInt64 = 1) -> Bool {
        address >= self.address && address <= end && length <= end - address
    }
}
