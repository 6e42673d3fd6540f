import GallocyCodec

// The allocator. The rule, which every member applies to the same tables and so reaches the same
// address:
// - a block of `size` bytes occupies `size` rounded up to 8 bytes (its extent);
// - it is 8-byte aligned, and page-aligned when `size` is at least the page size;
// - it goes into the first free range, by address, that holds the extent at that alignment
//   (first fit); the bytes skipped for alignment stay a free range of their own;
// - a freed block's extent merges with the free ranges on either side.
// Free ranges and blocks together tile [heapBase, heapBase + heapSize) exactly.
extension PageTable {
    func allocate(
        size requested: UInt64, member: UInt64, mode: AllocationMode = .release, company: Company,
        settings: ClusterSettings, index: UInt64
    ) throws(StateMachineError) -> ApplyResult {
        guard requested > 0 else { return .rejected(Rejection(.zeroSize, "an allocation of zero bytes")) }
        let pageSize = UInt64(settings.pageSize)
        // Sequential memory takes whole pages (a page's mode is the mode of all its bytes).
        let size = mode == .sequential ? Self.roundedToPages(requested, settings: settings) : requested
        guard size <= settings.heapSize else {
            return .rejected(Rejection(.outOfSpace, "\(size) bytes is more than the heap of \(settings.heapSize) bytes"))
        }
        let extent = (size + 7) & ~7
        let alignment = size >= pageSize ? pageSize : 8

        // First fit: walk the free ranges by address. Only ranges at least `extent` long can fit.
        let scan = try statement(.freeRangeFirstFit)
        defer { scan.reset() }
        try scan.bind(Int64(company), at: 1)
        try scan.bind(extent, at: 2)
        var chosen: (range: UInt64, rangeSize: UInt64, address: UInt64)?
        while try scan.step() {
            let rangeStart = scan.uint64(at: 0)
            let rangeSize = scan.uint64(at: 1)
            let address = (rangeStart + alignment - 1) & ~(alignment - 1)
            let skipped = address - rangeStart
            if skipped <= rangeSize, extent <= rangeSize - skipped {
                chosen = (rangeStart, rangeSize, address)
                break
            }
        }
        scan.reset()
        guard let chosen else {
            return .rejected(
                Rejection(.outOfSpace, "no free range holds \(size) bytes aligned to \(alignment) in company \(company)"))
        }

        let companyValue = SQLiteValue.integer(Int64(company))
        try run(.freeRangeDelete, companyValue, .unsigned(chosen.range))
        if chosen.address > chosen.range {
            try insertFreeRange(company: company, address: chosen.range, size: chosen.address - chosen.range)
        }
        let blockEnd = chosen.address + extent
        let rangeEnd = chosen.range + chosen.rangeSize
        if blockEnd < rangeEnd {
            try insertFreeRange(company: company, address: blockEnd, size: rangeEnd - blockEnd)
        }
        try run(
            .allocationInsert, companyValue, .unsigned(chosen.address), .unsigned(size), .unsigned(member), .unsigned(index))

        let pages = Self.pages(address: chosen.address, size: size, settings: settings)
        try run(.pageMarkAllocated, companyValue, .unsigned(pages.lowerBound), .unsigned(pages.upperBound))
        if mode == .sequential { try markSequential(pages: pages, company: company) }
        return .allocated(address: chosen.address)
    }

    func free(address: UInt64, company: Company, settings: ClusterSettings) throws(StateMachineError) -> ApplyResult {
        let companyValue = SQLiteValue.integer(Int64(company))
        guard
            let size = try firstRow(.allocationSize, companyValue, .unsigned(address), row: { $0.uint64(at: 0) })
        else {
            return .rejected(
                Rejection(.notAllocated, "no allocated block starts at 0x\(String(address, radix: 16)) in company \(company)"))
        }
        try run(.allocationDelete, companyValue, .unsigned(address))

        // Give the extent back, merged with the free ranges that touch it.
        let extent = (size + 7) & ~7
        var start = address
        var end = address + extent
        if let previous = try firstRow(.freeRangeBefore, companyValue, .unsigned(address), row: { ($0.uint64(at: 0), $0.uint64(at: 1)) }),
            previous.0 + previous.1 == start
        {
            try run(.freeRangeDelete, companyValue, .unsigned(previous.0))
            start = previous.0
        }
        if let nextSize = try firstRow(.freeRangeSize, companyValue, .unsigned(end), row: { $0.uint64(at: 0) })
        {
            try run(.freeRangeDelete, companyValue, .unsigned(end))
            end += nextSize
        }
        try insertFreeRange(company: company, address: start, size: end - start)

        // Pages no block overlaps any more go back to zero; their rows go unless a lease is
        // recorded on them (page-lease mode keeps lease epochs monotonic).
        let pages = Self.pages(address: address, size: size, settings: settings)
        try run(.pagesUnmark, companyValue, .unsigned(pages.lowerBound), .unsigned(pages.upperBound))
        // Only the first and the last page can be shared with other blocks.
        var zeroedLower = pages.lowerBound
        var zeroedUpper = pages.upperBound + 1
        if try blockCount(company: company, page: pages.lowerBound) > 0 { zeroedLower += 1 }
        if zeroedUpper > zeroedLower, try blockCount(company: company, page: pages.upperBound) > 0 { zeroedUpper -= 1 }
        try run(
            .pagesDeleteZero, companyValue, .unsigned(pages.lowerBound), .unsigned(pages.upperBound))
        try dropSequential(pages: zeroedLower..<max(zeroedLower, zeroedUpper), company: company)
        return .freed(address: address, extent: extent, zeroedPages: zeroedLower..<max(zeroedLower, zeroedUpper))
    }

    /// How many blocks overlap `page` (0 when it has no row).
    private func blockCount(company: Company, page: UInt64) throws(StateMachineError) -> UInt64 {
        try firstRow(.pageBlocks, .integer(Int64(company)), .unsigned(page), row: { $0.uint64(at: 0) }) ?? 0
    }

    private func insertFreeRange(company: Company, address: UInt64, size: UInt64) throws(StateMachineError) {
        try run(
            .freeRangeInsert, .integer(Int64(company)), .unsigned(address), .unsigned(size))
    }

    /// `size` rounded up to whole pages (saturating: a size that large fails to fit anyway).
    static func roundedToPages(_ size: UInt64, settings: ClusterSettings) -> UInt64 {
        let pageSize = UInt64(settings.pageSize)
        let (sum, overflow) = size.addingReportingOverflow(pageSize - 1)
        return overflow ? UInt64.max & ~(pageSize - 1) : sum & ~(pageSize - 1)
    }

    /// The pages that bytes [address, address + size) touch; size > 0 and the bytes lie in the heap.
    static func pages(address: UInt64, size: UInt64, settings: ClusterSettings) -> ClosedRange<UInt64> {
        let pageSize = UInt64(settings.pageSize)
        let first = (address - settings.heapBase) / pageSize
        let last = (address + size - 1 - settings.heapBase) / pageSize
        return first...last
    }
}
