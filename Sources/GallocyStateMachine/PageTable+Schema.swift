extension PageTable {
    /// The schema version, kept in `PRAGMA user_version` and checked when a snapshot is restored.
    /// Raise it whenever `schema` changes, and teach `migrate` to bring the older one up to it.
    ///
    /// 1: the first schema. 2: `barrier_arrivals` (who arrived in a barrier's current generation).
    /// 3: page leases: `page_leases` (the pages of sequential memory and their write lease) and
    /// `leases` redefined as the queue of requests waiting for a leased page.
    package static let schemaVersion: Int32 = 3

    /// The oldest schema a snapshot may have: `restore(snapshot:)` migrates it to `schemaVersion`.
    package static let oldestRestorableSchemaVersion: Int32 = 1

    /// The tables, in the order of the canonical dump, with the primary key each is ordered by.
    package static let tables: [(name: String, primaryKey: String)] = [
        ("settings", "company"),
        ("progress", "company"),
        ("pages", "company, page"),
        ("allocations", "company, address"),
        ("free_ranges", "company, address"),
        ("locks", "company, name"),
        ("page_leases", "company, page"),
        ("leases", "company, page, member"),
        ("barriers", "company, name"),
        ("barrier_arrivals", "company, name, member"),
        ("roots", "company, name"),
        ("members", "company, id"),
        ("sessions", "company, session"),
    ]

    // Every row carries its company. Unsigned 64-bit values (addresses, indexes, epochs, member
    // ids, session ids) are stored as the Int64 with the same bits; addresses stay below 2^63
    // (bootstrap refuses a heap that would not), so ordering by address is numeric.
    // Keys follow the engine's lookups: every lookup is by (company, key) or a range of it, so
    // WITHOUT ROWID tables clustered on that key need no secondary index.
    static let schema = """
        PRAGMA user_version = \(schemaVersion);

        -- The bootstrap settings of each company (the first entry of its log).
        CREATE TABLE settings (
            company         INTEGER PRIMARY KEY,
            cluster_id      INTEGER NOT NULL,
            heap_base       INTEGER NOT NULL,
            heap_size       INTEGER NOT NULL,
            page_size       INTEGER NOT NULL,
            bootstrap_index INTEGER NOT NULL
        ) STRICT;

        -- The last log index applied per company: a snapshot of the page table is as of this index.
        CREATE TABLE progress (
            company       INTEGER PRIMARY KEY,
            applied_index INTEGER NOT NULL
        ) STRICT;

        -- Pages that are not plain zero memory. A page without a row is 'zero': never allocated,
        -- or every block on it was freed (and the heap image zeroed it).
        CREATE TABLE pages (
            company          INTEGER NOT NULL,
            page             INTEGER NOT NULL,
            state            TEXT    NOT NULL CHECK (state IN ('zero', 'allocated')),
            blocks           INTEGER NOT NULL CHECK (blocks >= 0), -- allocations overlapping the page
            last_writer      INTEGER,
            last_write_index INTEGER,
            write_count      INTEGER NOT NULL DEFAULT 0,
            lease_holder     INTEGER,                              -- page-lease mode: write lease
            lease_epoch      INTEGER NOT NULL DEFAULT 0,
            lease_expires_at INTEGER,
            PRIMARY KEY (company, page)
        ) STRICT, WITHOUT ROWID;

        -- Allocated blocks. A block occupies [address, address + size rounded up to 8).
        CREATE TABLE allocations (
            company         INTEGER NOT NULL,
            address         INTEGER NOT NULL,
            size            INTEGER NOT NULL CHECK (size > 0),
            member          INTEGER NOT NULL,
            allocated_index INTEGER NOT NULL,
            PRIMARY KEY (company, address)
        ) STRICT, WITHOUT ROWID;

        -- The free ranges of the heap, coalesced: with allocations they tile the heap exactly.
        CREATE TABLE free_ranges (
            company INTEGER NOT NULL,
            address INTEGER NOT NULL,
            size    INTEGER NOT NULL CHECK (size > 0),
            PRIMARY KEY (company, address)
        ) STRICT, WITHOUT ROWID;

        -- Locks. A released lock keeps its row (holder NULL) so that its epoch stays monotonic.
        CREATE TABLE locks (
            company       INTEGER NOT NULL,
            name          TEXT    NOT NULL,
            holder        INTEGER,
            epoch         INTEGER NOT NULL,
            expires_at    INTEGER,            -- leader milliseconds
            granted_index INTEGER,
            PRIMARY KEY (company, name)
        ) STRICT, WITHOUT ROWID;

        \(leasesSchema)

        CREATE TABLE barriers (
            company      INTEGER NOT NULL,
            name         TEXT    NOT NULL,
            participants INTEGER NOT NULL,
            arrived      INTEGER NOT NULL,    -- members counted in the current generation
            generation   INTEGER NOT NULL,    -- openings so far
            opened_index INTEGER,             -- index of the entry that opened the last generation
            PRIMARY KEY (company, name)
        ) STRICT, WITHOUT ROWID;

        \(barrierArrivalsSchema)

        CREATE TABLE roots (
            company   INTEGER NOT NULL,
            name      TEXT    NOT NULL,
            address   INTEGER NOT NULL,
            set_index INTEGER NOT NULL,
            PRIMARY KEY (company, name)
        ) STRICT, WITHOUT ROWID;

        -- Membership, written by the engine when it applies a membership change (`setMembers`).
        CREATE TABLE members (
            company INTEGER NOT NULL,
            id      INTEGER NOT NULL,
            role    TEXT,
            address TEXT,
            PRIMARY KEY (company, id)
        ) STRICT, WITHOUT ROWID;

        -- Client sessions: the last sequence applied and its result, so a retry is applied once.
        CREATE TABLE sessions (
            company       INTEGER NOT NULL,
            session       INTEGER NOT NULL,
            last_sequence INTEGER NOT NULL,
            last_index    INTEGER NOT NULL,
            result        BLOB    NOT NULL,   -- ApplyResult.encoded
            PRIMARY KEY (company, session)
        ) STRICT, WITHOUT ROWID;
        """

    /// Schema 2: the members that arrived in the current generation of each barrier, so that a
    /// member arriving again is not counted twice. Emptied for a barrier when it opens.
    static let barrierArrivalsSchema = """
        CREATE TABLE IF NOT EXISTS barrier_arrivals (
            company       INTEGER NOT NULL,
            name          TEXT    NOT NULL,
            member        INTEGER NOT NULL,
            arrived_index INTEGER NOT NULL,   -- the entry of the member's (first) arrival
            PRIMARY KEY (company, name, member)
        ) STRICT, WITHOUT ROWID;
        """

    /// Schema 3: page leases (docs/consistency.md, "Sequential memory"). `page_leases` has a row
    /// for every page of sequential memory (made by `allocIn` with the sequential mode, dropped
    /// when the page is freed): its write lease's holder (NULL: no holder, every member may read)
    /// and the log index of its grant, which names the lease in releases and expiries. `leases`
    /// queues the requests that wait for a held page, served in log order. (The lease columns of
    /// `pages`, from schema 1, stay unused.)
    static let leasesSchema = """
        CREATE TABLE IF NOT EXISTS page_leases (
            company       INTEGER NOT NULL,
            page          INTEGER NOT NULL,
            holder        INTEGER,            -- the write lease's holder; NULL: every member reads
            granted_index INTEGER NOT NULL,   -- the entry that granted the current (or last) lease, 0: never
            expires_at    INTEGER,            -- leader milliseconds, while held
            PRIMARY KEY (company, page)
        ) STRICT, WITHOUT ROWID;

        CREATE TABLE IF NOT EXISTS leases (
            company         INTEGER NOT NULL,
            page            INTEGER NOT NULL,
            member          INTEGER NOT NULL,
            mode            TEXT    NOT NULL CHECK (mode IN ('read', 'write')),
            ttl_millis      INTEGER NOT NULL,
            requested_index INTEGER NOT NULL, -- queue order
            PRIMARY KEY (company, page, member)
        ) STRICT, WITHOUT ROWID;
        """

    /// Brings a database restored from an older snapshot (schema `from`) up to `schemaVersion`,
    /// in one transaction. The migration only adds: what the older schema held stays as it was.
    ///
    /// 2 → 3 replaces the empty, never written `leases` and adds the empty `page_leases`.
    /// 1 → 2 adds the empty `barrier_arrivals`. A schema 1 barrier in the middle of a generation
    /// keeps its `arrived` count, but who arrived was never recorded: those members are not known
    /// to have arrived, so one of them arriving again in that generation is counted again.
    static func migrate(_ database: SQLiteDatabase, from version: Int32) throws(StateMachineError) {
        guard version < schemaVersion else { return }
        try database.begin()
        do {
            if version < 2 { try database.exec(barrierArrivalsSchema) }
            // Schema 1 and 2 had a `leases` table of another shape that nothing ever wrote.
            if version < 3 { try database.exec("DROP TABLE IF EXISTS leases;\n" + leasesSchema) }
            try database.exec("PRAGMA user_version = \(schemaVersion)")
            try database.commit()
        } catch {
            try? database.rollback()
            throw error
        }
    }
}
