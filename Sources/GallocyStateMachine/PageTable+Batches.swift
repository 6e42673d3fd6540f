// Batches: several commands applied in one SQLite transaction, with some rows written later
// (docs/page-table.md, "Batches"). The state they keep is declared with the page table's other
// stored properties (PageTable.swift); `apply` consults it.
extension PageTable {
    /// Opens a batch: the commands applied until `endBatch()` share one SQLite transaction, each
    /// in a savepoint of its own (a rejected or failed command is still undone alone), and their
    /// session and progress rows are written once at the end (the writes' page records even
    /// later: see `pendingPageWrites`). The tables read the same inside and after a batch as
    /// without one: `pages`, `canonicalDump()`, `digest()`, `snapshot()`, `session(company:id:)`
    /// and `query(_:)` write what was deferred first. The engine opens one per Raft Ready: the
    /// per-entry cost of a transaction, two upserts and a page-row update is what it saves
    /// (`gallocy bench page-table`).
    package func beginBatch() throws(StateMachineError) {
        guard !batchOpen else { return }
        try database.begin()
        batchOpen = true
    }

    /// Writes the batch's session and progress rows and commits it. If that fails, everything
    /// the batch applied is rolled back (the caches are reloaded from the tables) and the error
    /// is thrown: the page table is then behind what was applied to the heap, so its owner must
    /// stop (the engine does).
    package func endBatch() throws(StateMachineError) {
        guard batchOpen else { return }
        do {
            try writeDeferredSessionRows()
            try database.commit()
            batchOpen = false
        } catch {
            forgetBatch()
            try? database.rollback()
            try? reloadCaches()
            throw error
        }
    }

    /// Drops the batch and everything deferred (the batch's transaction is rolled back, or the
    /// database replaced; after a failed batch the page table must not be used further).
    func forgetBatch() {
        batchOpen = false
        pendingSessions = [:]
        pendingProgress = [:]
        pendingPageWrites = [:]
        stagedPageWrites = []
        allocatedPages = []
    }

    /// Writes everything deferred, for a reader of the tables (not from inside a command, whose
    /// savepoint could roll it back; what a command reads, the page states, is never deferred).
    func prepareForReading() throws(StateMachineError) {
        guard !applying else { return }
        try writeDeferredSessionRows()
        try writePendingPageWritesNow()
    }

    /// Writes the deferred page records: inside the open batch, or in a transaction of their own.
    func writePendingPageWritesNow() throws(StateMachineError) {
        guard !pendingPageWrites.isEmpty else { return }
        if batchOpen { return try writePendingPageWrites() }
        try database.begin()
        do {
            try writePendingPageWrites()
            try database.commit()
        } catch {
            try? database.rollback()
            throw error
        }
    }

    /// Writes the session and progress rows the open batch deferred, inside it.
    private func writeDeferredSessionRows() throws(StateMachineError) {
        guard batchOpen, !applying else { return }
        for (key, record) in pendingSessions.sorted(by: { ($0.key.company, $0.key.session) < ($1.key.company, $1.key.session) }) {
            try run(
                .sessionUpsert, .integer(Int64(key.company)), .unsigned(key.session), .unsigned(record.lastSequence),
                .unsigned(record.lastIndex), .blob(record.result.encoded))
        }
        for (company, index) in pendingProgress.sorted(by: { $0.key < $1.key }) {
            try run(.progressUpsert, .integer(Int64(company)), .unsigned(index))
        }
        pendingSessions = [:]
        pendingProgress = [:]
    }

    /// Writes the deferred per-page records, one UPDATE per page, in the open transaction.
    private func writePendingPageWrites() throws(StateMachineError) {
        guard !pendingPageWrites.isEmpty else { return }
        let update = try statement(.pageRecordWrites)
        defer { update.reset() }
        for (key, record) in pendingPageWrites.sorted(by: { $0.key < $1.key }) {
            try update.bind(record.writer, at: 1)
            try update.bind(record.index, at: 2)
            try update.bind(record.count, at: 3)
            try update.bind(Int64(key.company), at: 4)
            try update.bind(key.page, at: 5)
            try update.step()
            update.reset()
        }
        pendingPageWrites.removeAll(keepingCapacity: true)
    }

    /// Adds the staged records of a command that applied to the batch's pending ones.
    func keepStagedPageWrites() {
        for write in stagedPageWrites {
            let key = PageKey(company: write.company, page: write.page)
            let count = pendingPageWrites[key]?.count ?? 0
            pendingPageWrites[key] = PendingPageWrite(writer: write.writer, index: write.index, count: count + 1)
        }
        stagedPageWrites.removeAll(keepingCapacity: true)
    }
}
