import GallocyCodec

/// The page table: the metadata half of Gallocy's deterministic state machine, in a private SQLite
/// `:memory:` database. It applies committed commands in log order; members that apply the same
/// commands hold the same tables (compare `canonicalDump()` / `digest()`).
///
/// Ownership: a page table is owned by one thread or actor at a time (the engine's apply loop, or
/// the offline log tool). It is not `Sendable`, and its SQLite connection takes no locks
/// (see `SQLiteDatabase`).
///
/// Determinism: applying reads nothing but the command, its index and the tables: no clock, no
/// randomness, no iteration over unordered collections.
package final class PageTable {
    /// The connection. Replaced as a whole by `restore(snapshot:)`.
    package private(set) var database: SQLiteDatabase
    /// Copies of `settings`, `progress` and the sessions' last sequences, the lookups every apply
    /// needs; reloaded from the tables after a restore and updated only after a commit, so they
    /// never hold what a rolled-back transaction wrote.
    private var settingsCache: [Company: ClusterSettings] = [:]
    private var appliedIndexCache: [Company: UInt64] = [:]
    private var lastSequenceCache: [SessionKey: UInt64] = [:]

    struct SessionKey: Hashable {
        var company: Company
        var session: UInt64
    }
    /// Batches (PageTable+Batches.swift): whether one is open (`beginBatch()`), and the session
    /// and progress rows its entries wrote, kept here until `endBatch()` writes each once (the
    /// last value wins, as it would row by row).
    var batchOpen = false
    var pendingSessions: [SessionKey: SessionRecord] = [:]
    var pendingProgress: [Company: UInt64] = [:]
    /// The per-page records of batched writes (last writer, its index, how many writes), kept
    /// here, across batches, and written once per page when something needs the rows: a command
    /// that could change a page's state (an allocation, a free, a lease) or apply outside a
    /// batch, or a reader (`pages`, `canonicalDump`, `query`, `snapshot`; see
    /// `prepareForReading()`). The command being applied stages them; they join
    /// `pendingPageWrites` only if it applies. Programs that write the same pages over and over
    /// (the usual case) thus update each page's row once in a long while instead of per write.
    /// `allocatedPages` holds pages a batched write found allocated, so that the next write to
    /// them needs no query; it is forgotten at any command that could change a page's state (and
    /// when it grows large).
    var stagedPageWrites: [(company: Company, page: UInt64, writer: UInt64, index: UInt64)] = []
    var pendingPageWrites: [PageKey: PendingPageWrite] = [:]
    var allocatedPages: Set<PageKey> = []

    struct PageKey: Hashable, Comparable {
        var company: Company
        var page: UInt64
        static func < (a: PageKey, b: PageKey) -> Bool { (a.company, a.page) < (b.company, b.page) }
    }

    struct PendingPageWrite {
        var writer: UInt64
        var index: UInt64
        var count: Int64
    }

    /// Whether a command is being applied (inside its savepoint).
    private(set) var applying = false
    /// The lease effects of the command being applied (see `LeaseEffect`); the state machine
    /// empties it before each command and reads it after an applied one.
    package var leaseEffects: [LeaseEffect] = []
    /// The statements of `SQL`, compiled on first use, indexed by `SQL.rawValue`.
    private var compiled: [SQLiteStatement?] = Array(repeating: nil, count: SQL.allCases.count)

    /// An empty page table: the schema, no rows.
    package init() throws(StateMachineError) {
        database = try SQLiteDatabase()
        try database.exec(Self.schema)
    }

    /// A page table restored from `snapshot()` bytes.
    package convenience init(snapshot: [UInt8]) throws(StateMachineError) {
        try self.init()
        try restore(snapshot: snapshot)
    }

    // MARK: Applying

    /// Applies one committed command at log `index`, in one SQLite transaction, and returns what
    /// the proposer needs to hear. An invalid command is applied as `.rejected` and changes nothing
    /// but the session and progress rows. A retried request (same session, sequence not above the
    /// last applied) is not applied again: the remembered result is returned.
    ///
    /// Throws only for machinery failures (SQLite) and for an `index` not above the last one
    /// applied for the command's company; the page table is then unchanged.
    package func apply(_ command: Command, index: UInt64) throws(StateMachineError) -> ApplyResult {
        try apply(command, index: index, finishing: { result throws(StateMachineError) in result })
    }

    /// Applies one committed command like `apply(_:index:)`, and lets the caller finish it inside
    /// the same transaction: `finish` is called with the page table's outcome only when the
    /// command is really performed (never for a retried request, which gets the stored result),
    /// before the session row is written. What it returns is the command's result: it is stored
    /// for the session, and a `.rejected` result rolls back everything the command did, just as
    /// a rejection by the page table itself does. The state machine uses it to check the diffs of
    /// a write against the heap and to put an atomic's outcome (`ok`, `old`) into the result
    /// that a retried request will get. If `finish` throws, nothing changed.
    package func apply(
        _ command: Command, index: UInt64, finishing finish: (ApplyResult) throws(StateMachineError) -> ApplyResult
    ) throws(StateMachineError) -> ApplyResult {
        let company = command.company
        if let last = appliedIndexCache[company], index <= last {
            throw StateMachineError(
                .indexOutOfOrder, "entry \(index) of company \(company) applied after entry \(last); apply each index once, in order")
        }
        guard index <= UInt64(Int64.max) else {
            throw StateMachineError(.invalidArgument, "log index \(index) is beyond what the page table stores")
        }
        switch command.body {
        case .write where batchOpen, .noop, .atomic, .lockAcquire, .lockRelease, .lockExpire, .barrierArrive,
            .barrierArriveAt, .setRoot:
            break
        default:
            // It may change which pages are allocated, or read or update the page rows: the
            // deferred records go in first (outside this command's savepoint, which a rejection
            // rolls back).
            try writePendingPageWritesNow()
            allocatedPages.removeAll(keepingCapacity: true)
        }
        try database.begin()
        applying = true
        defer { applying = false }
        let result: ApplyResult
        do {
            result = try applyInTransaction(command, index: index, finish: finish)
            try database.commit()
        } catch {
            try? database.rollback()
            throw error
        }
        appliedIndexCache[company] = index
        let client = command.client
        if client.session != 0 {
            let key = SessionKey(company: company, session: client.session)
            // A deduplicated command (sequence not above the last) left the session row as it was.
            if lastSequenceCache[key].map({ client.sequence > $0 }) ?? true { lastSequenceCache[key] = client.sequence }
        }
        if case .bootstrap(let settings) = command.body, result == .bootstrapped {
            settingsCache[company] = settings
        }
        return result
    }

    private func applyInTransaction(
        _ command: Command, index: UInt64, finish: (ApplyResult) throws(StateMachineError) -> ApplyResult
    ) throws(StateMachineError) -> ApplyResult {
        let company = command.company
        let client = command.client
        let result: ApplyResult
        let lastSequence =
            client.session == 0 ? nil : lastSequenceCache[SessionKey(company: company, session: client.session)]
        if let lastSequence, client.sequence <= lastSequence {
            if client.sequence == lastSequence, let session = try sessionRecord(company: company, session: client.session) {
                result = session.result
            } else {
                result = .rejected(
                    Rejection(
                        .staleRequest,
                        "session \(client.session) already applied sequence \(lastSequence); sequence \(client.sequence) is older"
                    ))
            }
        } else {
            if batchOpen { stagedPageWrites.removeAll(keepingCapacity: true) }
            let outcome = try finish(try perform(command.body, company: company, index: index))
            if batchOpen {
                if outcome.isApplied { keepStagedPageWrites() } else { stagedPageWrites.removeAll(keepingCapacity: true) }
            }
            if !outcome.isApplied {
                // A rejected command changes nothing: undo whatever it did before it was found
                // invalid, then record only the session and the progress below.
                try database.rollback()
                try database.begin()
            }
            if client.session != 0 {
                if batchOpen {
                    pendingSessions[SessionKey(company: company, session: client.session)] = SessionRecord(
                        lastSequence: client.sequence, lastIndex: index, result: outcome)
                } else {
                    try run(
                        .sessionUpsert, .integer(Int64(company)), .unsigned(client.session), .unsigned(client.sequence),
                        .unsigned(index), .blob(outcome.encoded))
                }
            }
            result = outcome
        }
        if batchOpen {
            pendingProgress[company] = index
        } else {
            try run(.progressUpsert, .integer(Int64(company)), .unsigned(index))
        }
        return result
    }

    private func perform(_ body: CommandBody, company: Company, index: UInt64) throws(StateMachineError) -> ApplyResult {
        switch body {
        case .noop:
            return .noop
        case .bootstrap(let settings):
            return try bootstrap(settings, company: company, index: index)
        default:
            break
        }
        guard let settings = settingsCache[company] else {
            return .rejected(Rejection(.notBootstrapped, "company \(company) has no bootstrap entry before index \(index)"))
        }
        switch body {
        case .noop, .bootstrap:
            return .noop  // handled above
        case .alloc(let size, let member):
            return try allocate(size: size, member: member, company: company, settings: settings, index: index)
        case .free(let address):
            return try free(address: address, company: company, settings: settings)
        case .write(let member, let pages, let releaseLock, let releaseEpoch):
            return try write(
                member: member, pages: pages, releaseLock: releaseLock, releaseEpoch: releaseEpoch, company: company,
                settings: settings, index: index)
        case .atomic(let address, _):
            return try validateAtomic(address: address, company: company)
        case .lockAcquire(let name, let member, let ttlMillis, let now):
            return try acquireLock(name: name, member: member, ttlMillis: ttlMillis, now: now, company: company, index: index)
        case .lockRelease(let name, let epoch):
            return try releaseLock(name: name, epoch: epoch, company: company, expiring: false)
        case .lockExpire(let name, let epoch):
            return try releaseLock(name: name, epoch: epoch, company: company, expiring: true)
        case .barrierArrive(let name, let participants, let member):
            return try arrive(
                barrier: name, participants: participants, member: member, generation: nil, company: company, index: index)
        case .barrierArriveAt(let name, let participants, let member, let generation):
            return try arrive(
                barrier: name, participants: participants, member: member, generation: generation, company: company,
                index: index)
        case .setRoot(let name, let address):
            return try setRoot(name: name, address: address, company: company, settings: settings, index: index)
        case .allocIn(let size, let member, let mode):
            return try allocate(size: size, member: member, mode: mode, company: company, settings: settings, index: index)
        case .leaseRequest(let page, let member, let write, let ttlMillis, let now):
            return try requestLease(
                page: page, member: member, write: write, ttlMillis: ttlMillis, now: now, company: company, index: index)
        case .leaseRelease(let page, let member, let grant, _, let now):
            return try endLease(page: page, member: member, grant: grant, now: now, company: company, index: index)
        case .leaseExpire(let page, let grant, let now):
            return try endLease(page: page, member: nil, grant: grant, now: now, company: company, index: index)
        }
    }

    private func bootstrap(_ settings: ClusterSettings, company: Company, index: UInt64) throws(StateMachineError) -> ApplyResult {
        if let existing = settingsCache[company] {
            if existing == settings { return .bootstrapped }
            return .rejected(
                Rejection(.settingsConflict, "company \(company) was bootstrapped with \(existing), not \(settings)"))
        }
        if let problem = Self.problem(with: settings) {
            return .rejected(Rejection(.invalidSettings, problem))
        }
        try run(
            .settingsInsert, .integer(Int64(company)), .unsigned(settings.clusterID), .unsigned(settings.heapBase),
            .unsigned(settings.heapSize), .integer(Int64(settings.pageSize)), .unsigned(index))
        try run(
            .freeRangeInsert, .integer(Int64(company)), .unsigned(settings.heapBase), .unsigned(settings.heapSize))
        return .bootstrapped
    }

    /// Why `settings` cannot describe a heap, or nil when they can.
    private static func problem(with settings: ClusterSettings) -> String? {
        let pageSize = UInt64(settings.pageSize)
        guard pageSize >= 8, pageSize & (pageSize - 1) == 0 else {
            return "page size \(pageSize) is not a power of two of at least 8"
        }
        guard settings.heapSize > 0, settings.heapSize % pageSize == 0 else {
            return "heap size \(settings.heapSize) is not a positive multiple of the page size \(pageSize)"
        }
        guard settings.heapBase % pageSize == 0 else {
            return "heap base 0x\(String(settings.heapBase, radix: 16)) is not page-aligned"
        }
        let (end, overflow) = settings.heapBase.addingReportingOverflow(settings.heapSize)
        guard !overflow, end <= UInt64(Int64.max) else {
            return "the heap [0x\(String(settings.heapBase, radix: 16)), +\(settings.heapSize)) does not end below 2^63"
        }
        return nil
    }

    // MARK: Caches

    /// Reloads the in-memory copies of `settings` and `progress` from the tables.
    func reloadCaches() throws(StateMachineError) {
        let settings = try database.rows(
            "SELECT company, cluster_id, heap_base, heap_size, page_size FROM settings", []
        ) { row in
            (
                Company(truncatingIfNeeded: row.int64(at: 0)),
                ClusterSettings(
                    clusterID: row.uint64(at: 1), heapBase: row.uint64(at: 2), heapSize: row.uint64(at: 3),
                    pageSize: UInt32(truncatingIfNeeded: row.int64(at: 4)))
            )
        }
        settingsCache = Dictionary(settings, uniquingKeysWith: { first, _ in first })
        let progress = try database.rows("SELECT company, applied_index FROM progress", []) { row in
            (Company(truncatingIfNeeded: row.int64(at: 0)), row.uint64(at: 1))
        }
        appliedIndexCache = Dictionary(progress, uniquingKeysWith: { first, _ in first })
        let sessions = try database.rows("SELECT company, session, last_sequence FROM sessions", []) { row in
            (SessionKey(company: Company(truncatingIfNeeded: row.int64(at: 0)), session: row.uint64(at: 1)), row.uint64(at: 2))
        }
        lastSequenceCache = Dictionary(sessions, uniquingKeysWith: { first, _ in first })
    }

    /// Replaces the connection (after a restore) and reloads the caches.
    func replaceDatabase(_ newDatabase: SQLiteDatabase) throws(StateMachineError) {
        // A restore ends an open batch: what it applied is replaced anyway.
        forgetBatch()
        database = newDatabase
        compiled = Array(repeating: nil, count: SQL.allCases.count)
        try reloadCaches()
    }

    /// The compiled statement for `sql` on the current connection.
    func statement(_ sql: SQL) throws(StateMachineError) -> SQLiteStatement {
        if let statement = compiled[sql.rawValue] { return statement }
        let statement = try database.prepare(sql.text)
        compiled[sql.rawValue] = statement
        return statement
    }

    // MARK: Sessions

    struct SessionRecord {
        var lastSequence: UInt64
        var lastIndex: UInt64
        var result: ApplyResult
    }

    func sessionRecord(company: Company, session: UInt64) throws(StateMachineError) -> SessionRecord? {
        if let pending = pendingSessions[SessionKey(company: company, session: session)] { return pending }
        let stored = try database.firstRow(
            "SELECT last_sequence, last_index, result FROM sessions WHERE company = ? AND session = ?",
            [.integer(Int64(company)), .unsigned(session)]
        ) { row in (row.uint64(at: 0), row.uint64(at: 1), row.blob(at: 2)) }
        guard let stored else { return nil }
        return SessionRecord(lastSequence: stored.0, lastIndex: stored.1, result: try ApplyResult(encoded: stored.2))
    }

    // MARK: Settings and progress

    /// The bootstrap settings of `company`, or nil before its bootstrap entry is applied.
    package func settings(company: Company = 0) -> ClusterSettings? { settingsCache[company] }

    /// The last log index applied for `company`, or nil before the first.
    package func appliedIndex(company: Company = 0) -> UInt64? { appliedIndexCache[company] }
}
