// The fixed SQL of the apply path, compiled once per connection and kept by `PageTable` in an
// array indexed by the case: looking a statement up costs an array access, not the hashing of its
// text that a cache keyed by SQL would cost on every entry.
extension PageTable {
    enum SQL: Int, CaseIterable {
        case sessionUpsert, progressUpsert
        case settingsInsert
        case freeRangeInsert, freeRangeDelete, freeRangeFirstFit, freeRangeBefore, freeRangeSize
        case allocationInsert, allocationSize, allocationDelete, allocationAtOrBefore
        case pageMarkAllocated, pagesUnmark, pageBlocks, pagesDeleteZero, pageRecordWrite, pageRecordWrites, pageAllocatedCount
        case lockSelect, lockUpsert, lockRelease
        case barrierSelect, barrierUpsert, barrierArrivalSelect, barrierArrivalInsert, barrierArrivalsDelete
        case rootDelete, rootUpsert

        var text: String {
            switch self {
            case .sessionUpsert:
                return """
                    INSERT INTO sessions (company, session, last_sequence, last_index, result) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (company, session) DO UPDATE SET
                        last_sequence = excluded.last_sequence, last_index = excluded.last_index, result = excluded.result
                    """
            case .progressUpsert:
                return """
                    INSERT INTO progress (company, applied_index) VALUES (?, ?)
                    ON CONFLICT (company) DO UPDATE SET applied_index = excluded.applied_index
                    """
            case .settingsInsert:
                return """
                    INSERT INTO settings (company, cluster_id, heap_base, heap_size, page_size, bootstrap_index)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """
            case .freeRangeInsert:
                return "INSERT INTO free_ranges (company, address, size) VALUES (?, ?, ?)"
            case .freeRangeDelete:
                return "DELETE FROM free_ranges WHERE company = ? AND address = ?"
            case .freeRangeFirstFit:
                // Only ranges at least the extent long can fit; alignment is checked per range.
                return "SELECT address, size FROM free_ranges WHERE company = ? AND size >= ? ORDER BY address"
            case .freeRangeBefore:
                return "SELECT address, size FROM free_ranges WHERE company = ? AND address < ? ORDER BY address DESC LIMIT 1"
            case .freeRangeSize:
                return "SELECT size FROM free_ranges WHERE company = ? AND address = ?"
            case .allocationInsert:
                return "INSERT INTO allocations (company, address, size, member, allocated_index) VALUES (?, ?, ?, ?, ?)"
            case .allocationSize:
                return "SELECT size FROM allocations WHERE company = ? AND address = ?"
            case .allocationDelete:
                return "DELETE FROM allocations WHERE company = ? AND address = ?"
            case .allocationAtOrBefore:
                return """
                    SELECT address, size, member, allocated_index FROM allocations
                    WHERE company = ? AND address <= ? ORDER BY address DESC LIMIT 1
                    """
            case .pageMarkAllocated:
                // Pages ?2...?3 of company ?1, in one statement: a large block has many pages.
                // (`WHERE true` is how SQLite tells an upsert's ON CONFLICT from a join's ON.)
                return """
                    WITH RECURSIVE covered(page) AS (SELECT ?2 UNION ALL SELECT page + 1 FROM covered WHERE page < ?3)
                    INSERT INTO pages (company, page, state, blocks) SELECT ?1, page, 'allocated', 1 FROM covered WHERE true
                    ON CONFLICT (company, page) DO UPDATE SET blocks = blocks + 1, state = 'allocated'
                    """
            case .pagesUnmark:
                return """
                    UPDATE pages SET blocks = blocks - 1, state = CASE WHEN blocks = 1 THEN 'zero' ELSE state END
                    WHERE company = ? AND page BETWEEN ? AND ?
                    """
            case .pageBlocks:
                return "SELECT blocks FROM pages WHERE company = ? AND page = ?"
            case .pagesDeleteZero:
                // Rows with lease history stay (page-lease mode keeps lease epochs monotonic).
                return """
                    DELETE FROM pages WHERE company = ? AND page BETWEEN ? AND ?
                    AND blocks = 0 AND lease_holder IS NULL AND lease_epoch = 0
                    """
            case .pageRecordWrites:
                // The writes a batch gathered for one page (checked allocated when they applied).
                return """
                    UPDATE pages SET last_writer = ?, last_write_index = ?, write_count = write_count + ?
                    WHERE company = ? AND page = ?
                    """
            case .pageAllocatedCount:
                return "SELECT count(*) FROM pages WHERE company = ? AND page BETWEEN ? AND ? AND state = 'allocated'"
            case .pageRecordWrite:
                return """
                    UPDATE pages SET last_writer = ?, last_write_index = ?, write_count = write_count + 1
                    WHERE company = ? AND page BETWEEN ? AND ? AND state = 'allocated'
                    """
            case .lockSelect:
                return "SELECT holder, epoch, expires_at, granted_index FROM locks WHERE company = ? AND name = ?"
            case .lockUpsert:
                return """
                    INSERT INTO locks (company, name, holder, epoch, expires_at, granted_index) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (company, name) DO UPDATE SET
                        holder = excluded.holder, epoch = excluded.epoch, expires_at = excluded.expires_at,
                        granted_index = excluded.granted_index
                    """
            case .lockRelease:
                return "UPDATE locks SET holder = NULL, expires_at = NULL WHERE company = ? AND name = ?"
            case .barrierSelect:
                return "SELECT participants, arrived, generation, opened_index FROM barriers WHERE company = ? AND name = ?"
            case .barrierUpsert:
                return """
                    INSERT INTO barriers (company, name, participants, arrived, generation, opened_index)
                    VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (company, name) DO UPDATE SET
                        participants = excluded.participants, arrived = excluded.arrived,
                        generation = excluded.generation, opened_index = excluded.opened_index
                    """
            case .barrierArrivalSelect:
                return "SELECT 1 FROM barrier_arrivals WHERE company = ? AND name = ? AND member = ?"
            case .barrierArrivalInsert:
                return "INSERT INTO barrier_arrivals (company, name, member, arrived_index) VALUES (?, ?, ?, ?)"
            case .barrierArrivalsDelete:
                return "DELETE FROM barrier_arrivals WHERE company = ? AND name = ?"
            case .rootDelete:
                return "DELETE FROM roots WHERE company = ? AND name = ?"
            case .rootUpsert:
                return """
                    INSERT INTO roots (company, name, address, set_index) VALUES (?, ?, ?, ?)
                    ON CONFLICT (company, name) DO UPDATE SET address = excluded.address, set_index = excluded.set_index
                    """
            }
        }
    }

    /// Runs fixed statement `sql` with `values` bound; returns the rows changed.
    @discardableResult
    func run(_ sql: SQL, _ values: SQLiteValue...) throws(StateMachineError) -> Int {
        try database.run(try statement(sql), values)
    }

    /// The first row of fixed statement `sql` with `values` bound.
    func firstRow<T>(
        _ sql: SQL, _ values: SQLiteValue..., row: (SQLiteStatement) throws(StateMachineError) -> T
    ) throws(StateMachineError) -> T? {
        try database.firstRow(try statement(sql), values, row)
    }
}
