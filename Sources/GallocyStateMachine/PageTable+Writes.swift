import GallocyCodec

extension PageTable {
    /// A write: every page must be allocated, and a lock it releases must still be held at the
    /// given epoch; otherwise nothing of it applies. The page table checks whole pages: that the
    /// diff's bytes stay inside allocated blocks is for the proposer to check (it knows the byte
    /// ranges before it encodes them), and the heap image applies the diff itself.
    func write(
        member: UInt64, pages: [PageWrite], releaseLock: String?, releaseEpoch: UInt64, company: Company,
        settings: ClusterSettings, index: UInt64
    ) throws(StateMachineError) -> ApplyResult {
        if let name = releaseLock {
            let lock = try lock(company: company, name: name)
            guard let lock, lock.isHeld(at: releaseEpoch) else {
                return .rejected(Rejection(.staleEpoch, Self.staleMessage(name: name, epoch: releaseEpoch, lock: lock)))
            }
        }
        let pageCount = settings.pageCount
        let record = try statement(.pageRecordWrite)
        defer { record.reset() }
        try record.bind(member, at: 1)
        try record.bind(index, at: 2)
        try record.bind(Int64(company), at: 3)
        // A release usually writes runs of consecutive pages: one range update per run, checked
        // by its count of changed rows, instead of one update per page.
        var runStart = 0
        while runStart < pages.count {
            var runEnd = runStart + 1
            while runEnd < pages.count, pages[runEnd - 1].page < UInt64.max, pages[runEnd].page == pages[runEnd - 1].page + 1 {
                runEnd += 1
            }
            let first = pages[runStart].page
            let last = pages[runEnd - 1].page
            guard last < pageCount else {
                return .rejected(Rejection(.outsideAllocation, "page \(last) is outside the heap of \(pageCount) pages"))
            }
            try record.bind(first, at: 4)
            try record.bind(last, at: 5)
            try record.step()
            record.reset()
            // Rejecting here leaves earlier pages updated; `apply` rolls a rejection back.
            guard database.changes == runEnd - runStart else {
                let rows = try self.pages(company: company, from: first, count: last - first + 1)
                let missing = rows.first { $0.state != .allocated }?.page ?? first
                return .rejected(Rejection(.outsideAllocation, "page \(missing) is not allocated"))
            }
            runStart = runEnd
        }
        if let name = releaseLock {
            try run(
                .lockRelease, .integer(Int64(company)), .text(name))
        }
        return .written(pages: pages.count, releasedLock: releaseLock != nil)
    }

    /// An atomic: the page table only checks the word's address; the heap image holds the value.
    func validateAtomic(address: UInt64, company: Company) throws(StateMachineError) -> ApplyResult {
        guard address % 8 == 0 else {
            return .rejected(Rejection(.misaligned, "the atomic word at 0x\(String(address, radix: 16)) is not 8-byte aligned"))
        }
        guard let block = try allocation(company: company, containing: address), block.contains(address, length: 8) else {
            return .rejected(
                Rejection(.outsideAllocation, "the atomic word at 0x\(String(address, radix: 16)) is not inside an allocated block"))
        }
        return .atomicAccepted(address: address)
    }
}
