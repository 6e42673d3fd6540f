import GallocyCodec

/// What applying a lease command (or an allocation or free of sequential memory) asks of the
/// members' runtimes, in order. The page table computes them deterministically; the state
/// machine hands them to the heap's `PageLeaseObserver` (the runtime of an in-process member),
/// which turns them into page protections: every member gets the same list and picks what
/// concerns it (`holder == self`).
package enum LeaseEffect: Sendable, Hashable {
    /// Forget every lease (a snapshot was restored; its leases follow as effects).
    case reset
    /// The pages became sequential memory, with no holder: every member may read them.
    case sequential(pages: ClosedRange<UInt64>)
    /// The page stopped being sequential memory (it was freed). A holder's unpublished writes
    /// are lost; the page is readable everywhere (release mode).
    case releaseMode(page: UInt64, holder: UInt64?, grant: UInt64)
    /// The lease `grant` of `holder` ended: released (`published`: its diff was applied just
    /// before) or expired (its unpublished writes are lost).
    case ended(page: UInt64, holder: UInt64, grant: UInt64, published: Bool)
    /// `holder` holds the write lease, granted by entry `grant`, until `expiresAt` (leader ms):
    /// writable on the holder, no access anywhere else.
    case granted(page: UInt64, holder: UInt64, grant: UInt64, expiresAt: UInt64)
    /// No holder: the page is readable (read-only) on every member.
    case shared(page: UInt64)
    /// `requester` waits for the page held by `holder` under `grant`: the holder should publish
    /// its writes and release.
    case requested(page: UInt64, holder: UInt64, grant: UInt64, requester: UInt64)
}

/// Receives the lease effects of each applied entry, on the apply path, right where they fall
/// among the entry's heap changes (see `StateMachine`).
package protocol PageLeaseObserver: AnyObject {
    func applyLeaseEffects(_ effects: [LeaseEffect])
}

/// One page of sequential memory as the page table holds it.
package struct PageLeaseRow: Sendable, Hashable {
    package var page: UInt64
    /// The write lease's holder; nil when every member may read the page.
    package var holder: UInt64?
    /// The entry that granted the current (or last) lease; 0 if never granted.
    package var grant: UInt64
    /// While held: the leader milliseconds at which the lease runs out.
    package var expiresAt: UInt64?
}

/// A request waiting for a held page.
package struct LeaseRequestRow: Sendable, Hashable {
    package var member: UInt64
    package var write: Bool
    package var ttlMillis: UInt64
    package var requestedIndex: UInt64
}

// The page leases (sequential memory). Times are milliseconds written into the commands by their
// proposers (the leader's, for an expiry); nothing here reads a clock.
extension PageTable {
    // MARK: Queries

    /// The lease row of `page`, or nil when the page is not sequential memory.
    package func pageLease(company: Company = 0, page: UInt64) throws(StateMachineError) -> PageLeaseRow? {
        try database.firstRow(
            "SELECT holder, granted_index, expires_at FROM page_leases WHERE company = ? AND page = ?",
            [.integer(Int64(company)), .unsigned(page)]
        ) { row in
            PageLeaseRow(page: page, holder: row.optionalUInt64(at: 0), grant: row.uint64(at: 1), expiresAt: row.optionalUInt64(at: 2))
        }
    }

    /// Every page of sequential memory, by page.
    package func pageLeases(company: Company = 0) throws(StateMachineError) -> [PageLeaseRow] {
        try database.rows(
            "SELECT page, holder, granted_index, expires_at FROM page_leases WHERE company = ? ORDER BY page",
            [.integer(Int64(company))]
        ) { row in
            PageLeaseRow(
                page: row.uint64(at: 0), holder: row.optionalUInt64(at: 1), grant: row.uint64(at: 2),
                expiresAt: row.optionalUInt64(at: 3))
        }
    }

    /// The held pages whose lease ran out before `now` (leader milliseconds), by page.
    package func expiredPageLeases(company: Company = 0, now: UInt64) throws(StateMachineError) -> [PageLeaseRow] {
        try database.rows(
            """
            SELECT page, holder, granted_index, expires_at FROM page_leases
            WHERE company = ? AND holder IS NOT NULL AND expires_at < ? ORDER BY page
            """,
            [.integer(Int64(company)), .unsigned(now)]
        ) { row in
            PageLeaseRow(
                page: row.uint64(at: 0), holder: row.optionalUInt64(at: 1), grant: row.uint64(at: 2),
                expiresAt: row.optionalUInt64(at: 3))
        }
    }

    /// The requests waiting for `page`, in the order they will be served.
    package func leaseQueue(company: Company = 0, page: UInt64) throws(StateMachineError) -> [LeaseRequestRow] {
        try database.rows(
            """
            SELECT member, mode, ttl_millis, requested_index FROM leases
            WHERE company = ? AND page = ? ORDER BY requested_index, member
            """,
            [.integer(Int64(company)), .unsigned(page)]
        ) { row in
            LeaseRequestRow(
                member: row.uint64(at: 0), write: row.text(at: 1) == "write", ttlMillis: row.uint64(at: 2),
                requestedIndex: row.uint64(at: 3))
        }
    }

    /// The effects to rebuild every member's page protections from the tables (after a restore).
    package func leaseEffectsFromTables(company: Company = 0) throws(StateMachineError) -> [LeaseEffect] {
        var effects: [LeaseEffect] = [.reset]
        for row in try pageLeases(company: company) {
            effects.append(.sequential(pages: row.page...row.page))
            if let holder = row.holder {
                effects.append(.granted(page: row.page, holder: holder, grant: row.grant, expiresAt: row.expiresAt ?? 0))
                if let next = try leaseQueue(company: company, page: row.page).first {
                    effects.append(.requested(page: row.page, holder: holder, grant: row.grant, requester: next.member))
                }
            }
        }
        return effects
    }

    // MARK: Applying

    /// Records `pages` as sequential memory (an `allocIn` of the sequential mode).
    func markSequential(pages: ClosedRange<UInt64>, company: Company) throws(StateMachineError) {
        try database.run(
            """
            WITH RECURSIVE covered(page) AS (SELECT ?2 UNION ALL SELECT page + 1 FROM covered WHERE page < ?3)
            INSERT INTO page_leases (company, page, holder, granted_index, expires_at)
            SELECT ?1, page, NULL, 0, NULL FROM covered WHERE true
            ON CONFLICT (company, page) DO UPDATE SET holder = NULL, expires_at = NULL
            """,
            .integer(Int64(company)), .unsigned(pages.lowerBound), .unsigned(pages.upperBound))
        leaseEffects.append(.sequential(pages: pages))
    }

    /// Pages `pages` no longer hold any block: those that were sequential memory stop being so,
    /// their leases and queued requests go.
    func dropSequential(pages: Range<UInt64>, company: Company) throws(StateMachineError) {
        guard !pages.isEmpty else { return }
        let rows = try database.rows(
            """
            SELECT page, holder, granted_index FROM page_leases
            WHERE company = ? AND page >= ? AND page < ? ORDER BY page
            """,
            [.integer(Int64(company)), .unsigned(pages.lowerBound), .unsigned(pages.upperBound)]
        ) { row in (row.uint64(at: 0), row.optionalUInt64(at: 1), row.uint64(at: 2)) }
        guard !rows.isEmpty else { return }
        let c = SQLiteValue.integer(Int64(company))
        try database.run(
            "DELETE FROM page_leases WHERE company = ? AND page >= ? AND page < ?", c, .unsigned(pages.lowerBound),
            .unsigned(pages.upperBound))
        try database.run(
            "DELETE FROM leases WHERE company = ? AND page >= ? AND page < ?", c, .unsigned(pages.lowerBound),
            .unsigned(pages.upperBound))
        for (page, holder, grant) in rows { leaseEffects.append(.releaseMode(page: page, holder: holder, grant: grant)) }
    }

    /// A request for `page`: with no holder, a write request is granted at once and a read
    /// request finds the page readable; with a holder (even the requester itself, which then
    /// gets the page again after its release), it waits in the queue, once per member (a write
    /// request makes the member's queued read request a write one).
    func requestLease(
        page: UInt64, member: UInt64, write: Bool, ttlMillis: UInt64, now: UInt64, company: Company, index: UInt64
    ) throws(StateMachineError) -> ApplyResult {
        guard ttlMillis > 0 else {
            return .rejected(Rejection(.invalidArgument, "page \(page) asked for with a lease of 0 ms"))
        }
        guard let row = try pageLease(company: company, page: page) else {
            return .rejected(Rejection(.invalidArgument, "page \(page) is not sequential memory"))
        }
        guard let holder = row.holder else {
            if write { return try grantLease(page: page, to: member, ttlMillis: ttlMillis, now: now, company: company, index: index) }
            leaseEffects.append(.shared(page: page))
            return .lease(page: page, holder: nil, grant: row.grant, expiresAt: 0)
        }
        try database.run(
            """
            INSERT INTO leases (company, page, member, mode, ttl_millis, requested_index) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (company, page, member) DO UPDATE SET
                mode = CASE WHEN excluded.mode = 'write' THEN 'write' ELSE mode END,
                ttl_millis = excluded.ttl_millis
            """,
            .integer(Int64(company)), .unsigned(page), .unsigned(member), .text(write ? "write" : "read"),
            .unsigned(ttlMillis), .unsigned(index))
        leaseEffects.append(.requested(page: page, holder: holder, grant: row.grant, requester: member))
        return .lease(page: page, holder: holder, grant: row.grant, expiresAt: row.expiresAt ?? 0)
    }

    /// A release by the holder (`member`, with its diff: the state machine applies it) or the
    /// leader's expiry (`member` nil) of the lease `grant` of `page`; rejected unless that lease
    /// is the current one. The page passes to the first queued request: a write request is
    /// granted (until `now` plus its ttl); a read request makes the page readable everywhere
    /// and empties the queue (the waiting writers fault again and ask again, so the readers get
    /// at least a consensus round to read).
    func endLease(
        page: UInt64, member: UInt64?, grant: UInt64, now: UInt64, company: Company, index: UInt64
    ) throws(StateMachineError) -> ApplyResult {
        let row = try pageLease(company: company, page: page)
        guard let row, let holder = row.holder, row.grant == grant, member.map({ $0 == holder }) ?? true else {
            let what = member.map { "member \($0)'s release" } ?? "the expiry"
            let state: String
            if let row {
                state = row.holder.map { "is held by member \($0) under grant \(row.grant)" } ?? "is not held"
            } else {
                state = "is not sequential memory"
            }
            return .rejected(
                Rejection(.staleEpoch, "\(what) of the lease of page \(page) granted at \(grant): the page \(state)"))
        }
        leaseEffects.append(.ended(page: page, holder: holder, grant: grant, published: member != nil))
        let c = SQLiteValue.integer(Int64(company))
        guard let next = try leaseQueue(company: company, page: page).first else {
            try database.run(
                "UPDATE page_leases SET holder = NULL, expires_at = NULL WHERE company = ? AND page = ?", c, .unsigned(page))
            leaseEffects.append(.shared(page: page))
            return .lease(page: page, holder: nil, grant: grant, expiresAt: 0)
        }
        guard next.write else {
            try database.run(
                "UPDATE page_leases SET holder = NULL, expires_at = NULL WHERE company = ? AND page = ?", c, .unsigned(page))
            try database.run("DELETE FROM leases WHERE company = ? AND page = ?", c, .unsigned(page))
            leaseEffects.append(.shared(page: page))
            return .lease(page: page, holder: nil, grant: grant, expiresAt: 0)
        }
        try database.run(
            "DELETE FROM leases WHERE company = ? AND page = ? AND member = ?", c, .unsigned(page), .unsigned(next.member))
        return try grantLease(page: page, to: next.member, ttlMillis: next.ttlMillis, now: now, company: company, index: index)
    }

    /// Grants the write lease of `page` to `member` at entry `index`; if more requests wait, the
    /// new holder hears that it should release (after its first access: see the runtime).
    private func grantLease(
        page: UInt64, to member: UInt64, ttlMillis: UInt64, now: UInt64, company: Company, index: UInt64
    ) throws(StateMachineError) -> ApplyResult {
        let (sum, overflow) = now.addingReportingOverflow(ttlMillis)
        let expiresAt = overflow || sum > UInt64(Int64.max) ? UInt64(Int64.max) : sum
        let c = SQLiteValue.integer(Int64(company))
        try database.run(
            "UPDATE page_leases SET holder = ?, granted_index = ?, expires_at = ? WHERE company = ? AND page = ?",
            .unsigned(member), .unsigned(index), .unsigned(expiresAt), c, .unsigned(page))
        leaseEffects.append(.granted(page: page, holder: member, grant: index, expiresAt: expiresAt))
        if let waiting = try leaseQueue(company: company, page: page).first {
            leaseEffects.append(.requested(page: page, holder: member, grant: index, requester: waiting.member))
        }
        return .lease(page: page, holder: member, grant: index, expiresAt: expiresAt)
    }
}
