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
        if batchOpen {
            // In a batch: check now, record later (`pendingPageWrites`), once per page.
            if let rejection = try checkAllocated(pages, company: company, pageCount: pageCount) { return rejection }
            for write in pages {
                stagedPageWrites.append((company: company, page: write.page, writer: member, index: index))
            }
        } else if let rejection = try recordWrites(pages, member: member, company: company, pageCount: pageCount, index: index) {
            return rejection
        }
        if let name = releaseLock {
            try run(
                .lockRelease, .integer(Int64(company)), .text(name))
        }
        return .written(pages: pages.count, releasedLock: releaseLock != nil)
    }

    /// The runs of consecutive pages of a write: (first, last) page.
    private static func runs(_ pages: [PageWrite]) -> [(first: UInt64, last: UInt64)] {
        var runs: [(first: UInt64, last: UInt64)] = []
        for write in pages {
            if let last = runs.last?.last, last < UInt64.max, write.page == last + 1 {
                runs[runs.count - 1].last = write.page
            } else {
                runs.append((write.page, write.page))
            }
        }
        return runs
    }

    /// Checks that every page of a write is allocated, without changing anything: pages found
    /// allocated earlier in the batch need no query.
    private func checkAllocated(_ pages: [PageWrite], company: Company, pageCount: UInt64) throws(StateMachineError)
        -> ApplyResult?
    {
        for run in Self.runs(pages) {
            guard run.last < pageCount else {
                return .rejected(Rejection(.outsideAllocation, "page \(run.last) is outside the heap of \(pageCount) pages"))
            }
            if (run.first...run.last).allSatisfy({ allocatedPages.contains(PageKey(company: company, page: $0)) }) { continue }
            let count = try statement(.pageAllocatedCount)
            try count.bind(Int64(company), at: 1)
            try count.bind(run.first, at: 2)
            try count.bind(run.last, at: 3)
            _ = try count.step()
            let allocated = UInt64(count.int64(at: 0))
            count.reset()
            guard allocated == run.last - run.first + 1 else {
                let rows = try self.pages(company: company, from: run.first, count: run.last - run.first + 1)
                let missing = rows.first { $0.state != .allocated }?.page ?? run.first
                return .rejected(Rejection(.outsideAllocation, "page \(missing) is not allocated"))
            }
            if allocatedPages.count > 1 << 16 { allocatedPages.removeAll(keepingCapacity: true) }
            for page in run.first...run.last { allocatedPages.insert(PageKey(company: company, page: page)) }
        }
        return nil
    }

    /// Records a write on each of its pages (one range update per run), checking that every page
    /// is allocated; a rejection may leave earlier runs updated (`apply` rolls it back).
    private func recordWrites(
        _ pages: [PageWrite], member: UInt64, company: Company, pageCount: UInt64, index: UInt64
    ) throws(StateMachineError) -> ApplyResult? {
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
        return nil
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
