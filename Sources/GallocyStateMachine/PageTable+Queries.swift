import GallocyCodec

// The lookups the engine and the log tool make. They read the committed tables and never change
// them (except `setMembers`).
extension PageTable {
    /// The rows of pages [from, from + count) of `company`, one per page, in page order; pages
    /// without a stored row read as `.zero`. The range is clipped to the heap; empty before the
    /// company's bootstrap.
    package func pages(company: Company = 0, from: UInt64, count: UInt64) throws(StateMachineError) -> [PageRow] {
        guard let settings = settings(company: company), from < settings.pageCount else { return [] }
        try prepareForReading()
        let end = from + min(count, settings.pageCount - from)
        guard end > from else { return [] }
        let pageSize = UInt64(settings.pageSize)
        let stored = try database.rows(
            """
            SELECT page, state, blocks, last_writer, last_write_index, write_count, lease_holder, lease_epoch, lease_expires_at
            FROM pages WHERE company = ? AND page >= ? AND page < ? ORDER BY page
            """, [.integer(Int64(company)), .unsigned(from), .unsigned(end)]
        ) { row in
            PageRow(
                company: company, page: row.uint64(at: 0), address: settings.heapBase + row.uint64(at: 0) * pageSize,
                state: PageRow.State(rawValue: row.text(at: 1)) ?? .zero, blocks: row.uint64(at: 2),
                lastWriter: row.optionalUInt64(at: 3), lastWriteIndex: row.optionalUInt64(at: 4),
                writeCount: row.uint64(at: 5), leaseHolder: row.optionalUInt64(at: 6), leaseEpoch: row.uint64(at: 7),
                leaseExpiresAt: row.optionalUInt64(at: 8))
        }
        var result: [PageRow] = []
        result.reserveCapacity(Int(end - from))
        var nextStored = 0
        for page in from..<end {
            if nextStored < stored.count, stored[nextStored].page == page {
                result.append(stored[nextStored])
                nextStored += 1
            } else {
                result.append(PageRow(company: company, page: page, address: settings.heapBase + page * pageSize))
            }
        }
        return result
    }

    /// The page number of `address` in `company`'s heap, or nil when it is outside the heap.
    package func page(company: Company = 0, containing address: UInt64) -> UInt64? {
        guard let settings = settings(company: company), address >= settings.heapBase,
            address - settings.heapBase < settings.heapSize
        else { return nil }
        return (address - settings.heapBase) / UInt64(settings.pageSize)
    }

    /// The allocated block that holds byte `address`, or nil.
    package func allocation(company: Company = 0, containing address: UInt64) throws(StateMachineError) -> Allocation? {
        guard address <= UInt64(Int64.max) else { return nil }
        let block = try firstRow(.allocationAtOrBefore, .integer(Int64(company)), .unsigned(address)) { row in
            Allocation(
                company: company, address: row.uint64(at: 0), size: row.uint64(at: 1), member: row.uint64(at: 2),
                allocatedIndex: row.uint64(at: 3))
        }
        guard let block, block.contains(address) else { return nil }
        return block
    }

    /// Whether bytes [address, address + length) all lie inside one allocated block (the check
    /// for `PUT /v1/memory` before a write is proposed).
    package func isAllocated(company: Company = 0, address: UInt64, length: UInt64) throws(StateMachineError) -> Bool {
        guard length > 0 else { return try allocation(company: company, containing: address) != nil }
        guard let block = try allocation(company: company, containing: address) else { return false }
        return block.contains(address, length: length)
    }

    /// Every allocated block of `company`, by address.
    package func allocations(company: Company = 0) throws(StateMachineError) -> [Allocation] {
        try database.rows(
            "SELECT address, size, member, allocated_index FROM allocations WHERE company = ? ORDER BY address",
            [.integer(Int64(company))]
        ) { row in
            Allocation(
                company: company, address: row.uint64(at: 0), size: row.uint64(at: 1), member: row.uint64(at: 2),
                allocatedIndex: row.uint64(at: 3))
        }
    }

    /// The free ranges of `company` as (address, size), by address.
    package func freeRanges(company: Company = 0) throws(StateMachineError) -> [(address: UInt64, size: UInt64)] {
        try database.rows(
            "SELECT address, size FROM free_ranges WHERE company = ? ORDER BY address", [.integer(Int64(company))]
        ) { row in (address: row.uint64(at: 0), size: row.uint64(at: 1)) }
    }

    /// The state of lock `name`, or nil when it was never granted.
    package func lock(company: Company = 0, name: String) throws(StateMachineError) -> LockState? {
        try firstRow(.lockSelect, .integer(Int64(company)), .text(name)) { row in
            LockState(
                company: company, name: name, holder: row.optionalUInt64(at: 0), epoch: row.uint64(at: 1),
                expiresAt: row.optionalUInt64(at: 2), grantedIndex: row.optionalUInt64(at: 3))
        }
    }

    /// Every lock of `company`, by name.
    package func locks(company: Company = 0) throws(StateMachineError) -> [LockState] {
        try database.rows(
            "SELECT name, holder, epoch, expires_at, granted_index FROM locks WHERE company = ? ORDER BY name",
            [.integer(Int64(company))]
        ) { row in
            LockState(
                company: company, name: row.text(at: 0), holder: row.optionalUInt64(at: 1), epoch: row.uint64(at: 2),
                expiresAt: row.optionalUInt64(at: 3), grantedIndex: row.optionalUInt64(at: 4))
        }
    }

    /// The state of barrier `name`, with the members that arrived in its current generation, or
    /// nil when nobody arrived at it yet.
    package func barrier(company: Company = 0, name: String) throws(StateMachineError) -> BarrierState? {
        guard var state = try barrierRow(company: company, name: name) else { return nil }
        if state.arrived > 0 {
            // Sorted here, not by SQL: members are stored as the Int64 with the same bits.
            state.arrivedMembers = try database.rows(
                "SELECT member FROM barrier_arrivals WHERE company = ? AND name = ?", [.integer(Int64(company)), .text(name)]
            ) { row in row.uint64(at: 0) }.sorted()
        }
        return state
    }

    /// The row of barrier `name` without its members (what an arrival needs).
    func barrierRow(company: Company, name: String) throws(StateMachineError) -> BarrierState? {
        try firstRow(.barrierSelect, .integer(Int64(company)), .text(name)) { row in
            BarrierState(
                company: company, name: name, participants: UInt32(truncatingIfNeeded: row.int64(at: 0)),
                arrived: UInt32(truncatingIfNeeded: row.int64(at: 1)), generation: row.uint64(at: 2),
                openedIndex: row.optionalUInt64(at: 3))
        }
    }

    /// The address of root `name`, or nil when it is not set.
    package func root(company: Company = 0, name: String) throws(StateMachineError) -> UInt64? {
        try database.firstRow(
            "SELECT address FROM roots WHERE company = ? AND name = ?", [.integer(Int64(company)), .text(name)]
        ) { $0.uint64(at: 0) }
    }

    /// The remembered answer of `session`: its last applied sequence and the result of it.
    package func session(company: Company = 0, id: UInt64) throws(StateMachineError) -> (lastSequence: UInt64, result: ApplyResult)? {
        guard let record = try sessionRecord(company: company, session: id) else { return nil }
        return (record.lastSequence, record.result)
    }

    /// The members of `company`, by id.
    package func members(company: Company = 0) throws(StateMachineError) -> [Member] {
        try database.rows(
            "SELECT id, role, address FROM members WHERE company = ? ORDER BY id", [.integer(Int64(company))]
        ) { row in
            Member(
                id: row.uint64(at: 0), role: row.isNull(at: 1) ? nil : row.text(at: 1),
                address: row.isNull(at: 2) ? nil : row.text(at: 2))
        }
    }

    /// Replaces the members of `company`, in one transaction. The engine calls this when it
    /// applies a membership change (in log order, like any entry), so members agree on it.
    package func setMembers(company: Company = 0, _ members: [Member]) throws(StateMachineError) {
        try database.begin()
        do {
            try database.run("DELETE FROM members WHERE company = ?", .integer(Int64(company)))
            for member in members {
                try database.run(
                    """
                    INSERT INTO members (company, id, role, address) VALUES (?, ?, ?, ?)
                    ON CONFLICT (company, id) DO UPDATE SET role = excluded.role, address = excluded.address
                    """, .integer(Int64(company)), .unsigned(member.id), member.role.map { .text($0) } ?? .null,
                    member.address.map { .text($0) } ?? .null)
            }
            try database.commit()
        } catch {
            try? database.rollback()
            throw error
        }
    }

    /// Runs a read-only SQL query against the page table (`gallocy log replay --sql`); anything
    /// that would change it is refused with `.notReadOnly`, bad SQL with `.badQuery`.
    package func query(_ sql: String, maxRows: Int = .max) throws(StateMachineError) -> QueryResult {
        try prepareForReading()
        return try database.readOnlyQuery(sql, maxRows: maxRows)
    }
}
