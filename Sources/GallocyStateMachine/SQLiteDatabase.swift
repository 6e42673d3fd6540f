import CSQLite

/// One SQLite connection (`sqlite3*`), normally to a private `:memory:` database.
///
/// Threads: the connection is opened with `SQLITE_OPEN_NOMUTEX` (SQLite's multi-thread mode), so
/// SQLite takes no lock of its own on each call; in exchange the connection, and every statement
/// prepared on it, must be used by one thread at a time. The owner guarantees that: a `PageTable`
/// (which owns its database) is owned by one thread or actor at a time, and this class is
/// deliberately not `Sendable`. `SQLITE_OPEN_FULLMUTEX` would only serialize calls, not make
/// multi-statement transactions safe to interleave, so it would cost a mutex per call and buy
/// nothing here.
package final class SQLiteDatabase {
    /// The connection handle, closed (`sqlite3_close_v2`) when this object goes away.
    package let handle: OpaquePointer
    var statementCache: [String: SQLiteStatement] = [:]
    /// BEGIN, COMMIT, ROLLBACK and the savepoint statements of a nested transaction, compiled
    /// on first use: every applied entry runs two of them. They do not depend on the schema, so
    /// they survive `deserialize`.
    private var transactionStatements: [SQLiteStatement?] = Array(repeating: nil, count: TransactionSQL.allCases.count)

    private enum TransactionSQL: Int, CaseIterable {
        case begin, commit, rollback, savepoint, release, rollbackToSavepoint

        var text: String {
            switch self {
            case .begin: "BEGIN"
            case .commit: "COMMIT"
            case .rollback: "ROLLBACK"
            case .savepoint: "SAVEPOINT nested"
            case .release: "RELEASE nested"
            case .rollbackToSavepoint: "ROLLBACK TO nested"
            }
        }
    }
    /// How many transactions are open: 1 for a plain one, more when savepoints nest inside it.
    private var depth = 0

    /// Opens a database (`sqlite3_open_v2`): `:memory:` by default, a private in-memory database.
    package init(path: String = ":memory:") throws(StateMachineError) {
        var connection: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_PRIVATECACHE
        let rc = sqlite3_open_v2(path, &connection, flags, nil)
        guard rc == SQLITE_OK, let connection else {
            let message = connection.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let connection { sqlite3_close_v2(connection) }
            throw StateMachineError(.sqlite, "opening SQLite database \(path): \(message)", sqliteCode: rc)
        }
        handle = connection
        sqlite3_extended_result_codes(connection, 1)
    }

    deinit {
        statementCache.removeAll()
        sqlite3_close_v2(handle)
    }

    /// The last error message of this connection (`sqlite3_errmsg`).
    package var lastErrorMessage: String { String(cString: sqlite3_errmsg(handle)) }

    /// Runs one or more statements that return no rows that matter (`sqlite3_exec`).
    package func exec(_ sql: String) throws(StateMachineError) {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &errorMessage)
        guard rc == SQLITE_OK else {
            let message = errorMessage.map { String(cString: $0) } ?? lastErrorMessage
            sqlite3_free(errorMessage)
            throw StateMachineError(.sqlite, "running `\(sql)`: \(message)", sqliteCode: rc)
        }
    }

    /// Compiles one statement (`sqlite3_prepare_v3`). The statement is the caller's, not cached.
    package func prepare(_ sql: String) throws(StateMachineError) -> SQLiteStatement {
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else {
            if rc == SQLITE_OK {
                throw StateMachineError(.sqlite, "`\(sql)` holds no statement", sqliteCode: SQLITE_MISUSE)
            }
            throw StateMachineError(.sqlite, "preparing `\(sql)`: \(lastErrorMessage)", sqliteCode: rc)
        }
        return SQLiteStatement(connection: handle, handle: statement, sql: sql)
    }

    /// The statement for `sql`, compiled on first use and reused after: callers bind, step and
    /// `reset()` it. Meant for the fixed SQL of the page table, not for arbitrary user queries.
    package func cached(_ sql: String) throws(StateMachineError) -> SQLiteStatement {
        if let statement = statementCache[sql] { return statement }
        let statement = try prepare(sql)
        statementCache[sql] = statement
        return statement
    }

    /// Runs `sql` with `values` bound and returns the number of rows it changed
    /// (`sqlite3_changes64`). The statement is cached.
    @discardableResult
    package func run(_ sql: String, _ values: SQLiteValue...) throws(StateMachineError) -> Int {
        try run(try cached(sql), values)
    }

    /// Runs a prepared `statement` with `values` bound, resets it, and returns the number of rows
    /// it changed (`sqlite3_changes64`).
    @discardableResult
    package func run(_ statement: SQLiteStatement, _ values: [SQLiteValue]) throws(StateMachineError) -> Int {
        defer { statement.reset() }
        try statement.bind(values)
        while try statement.step() {}
        return Int(sqlite3_changes64(handle))
    }

    /// The rows of `sql` with `values` bound, each made by `row` while the statement sits on it.
    package func rows<T>(
        _ sql: String, _ values: [SQLiteValue], _ row: (SQLiteStatement) throws(StateMachineError) -> T
    ) throws(StateMachineError) -> [T] {
        try rows(try cached(sql), values, row)
    }

    /// The rows of a prepared `statement` with `values` bound; the statement is reset after.
    package func rows<T>(
        _ statement: SQLiteStatement, _ values: [SQLiteValue], _ row: (SQLiteStatement) throws(StateMachineError) -> T
    ) throws(StateMachineError) -> [T] {
        defer { statement.reset() }
        try statement.bind(values)
        var result: [T] = []
        while try statement.step() { result.append(try row(statement)) }
        return result
    }

    /// The first row of `sql` with `values` bound, or nil when there is none.
    package func firstRow<T>(
        _ sql: String, _ values: [SQLiteValue], _ row: (SQLiteStatement) throws(StateMachineError) -> T
    ) throws(StateMachineError) -> T? {
        try firstRow(try cached(sql), values, row)
    }

    /// The first row of a prepared `statement` with `values` bound; the statement is reset after.
    package func firstRow<T>(
        _ statement: SQLiteStatement, _ values: [SQLiteValue], _ row: (SQLiteStatement) throws(StateMachineError) -> T
    ) throws(StateMachineError) -> T? {
        defer { statement.reset() }
        try statement.bind(values)
        guard try statement.step() else { return nil }
        return try row(statement)
    }

    /// The number of rows changed by the last statement (`sqlite3_changes64`).
    package var changes: Int { Int(sqlite3_changes64(handle)) }

    /// Whether a transaction is open (`sqlite3_get_autocommit` is 0).
    package var isInTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    // MARK: Transactions

    /// `BEGIN`: opens a transaction; inside one, a nested savepoint instead, so that a caller
    /// that groups several transactions into one (the page table's batches) can still undo the
    /// inner one alone. Prefer `transaction(_:)`.
    package func begin() throws(StateMachineError) {
        try run(try transactionStatement(depth == 0 ? .begin : .savepoint), [])
        depth += 1
    }
    /// `COMMIT`, or the release of the innermost savepoint.
    package func commit() throws(StateMachineError) {
        guard depth > 0 else { throw StateMachineError(.sqlite, "COMMIT without a transaction", sqliteCode: SQLITE_MISUSE) }
        try run(try transactionStatement(depth == 1 ? .commit : .release), [])
        depth -= 1
    }
    /// `ROLLBACK` (or, nested, back to and out of the innermost savepoint); does nothing when no
    /// transaction is open (SQLite may already have rolled back after an error such as
    /// SQLITE_FULL, which also ends every savepoint).
    package func rollback() throws(StateMachineError) {
        guard isInTransaction else {
            depth = 0
            return
        }
        if depth > 1 {
            try run(try transactionStatement(.rollbackToSavepoint), [])
            try run(try transactionStatement(.release), [])
            depth -= 1
        } else {
            try run(try transactionStatement(.rollback), [])
            depth = 0
        }
    }

    private func transactionStatement(_ sql: TransactionSQL) throws(StateMachineError) -> SQLiteStatement {
        if let statement = transactionStatements[sql.rawValue] { return statement }
        let statement = try prepare(sql.text)
        transactionStatements[sql.rawValue] = statement
        return statement
    }

    /// Runs `body` in one transaction: committed when it returns, rolled back when it throws.
    @discardableResult
    package func transaction<T>(_ body: () throws -> T) throws -> T {
        try begin()
        let result: T
        do {
            result = try body()
        } catch {
            // The original error is the one worth reporting; a failed rollback after it leaves the
            // transaction for SQLite to roll back when the connection is next used or closed.
            try? rollback()
            throw error
        }
        do {
            try commit()
        } catch {
            try? rollback()
            throw error
        }
        return result
    }
}
