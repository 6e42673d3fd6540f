/// What two members compare to prove they hold the same state: the page table's digest (CRC-32C
/// of its canonical dump, which includes the applied index) and the heap's (CRC-32C of its
/// non-zero pages with their page numbers). Equal digests at the same applied index mean equal
/// states, up to CRC collisions.
package struct StateMachineDigest: Sendable, Hashable, CustomStringConvertible {
    /// The index of the last entry applied.
    package var appliedIndex: UInt64
    /// `PageTable.digest()`.
    package var pageTable: UInt32
    /// `HeapImage.digest()`, 0 before there is a heap.
    package var heap: UInt32

    package init(appliedIndex: UInt64, pageTable: UInt32, heap: UInt32) {
        self.appliedIndex = appliedIndex
        self.pageTable = pageTable
        self.heap = heap
    }

    /// Both digests in one number: the page table's in the high 32 bits, the heap's in the low.
    package var combined: UInt64 { UInt64(pageTable) << 32 | UInt64(heap) }

    /// `index <applied index> table <hex> heap <hex>`.
    package var description: String {
        "index \(appliedIndex) table \(Self.hex(pageTable)) heap \(Self.hex(heap))"
    }

    private static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }
}
