import CSQLite

extension SQLiteDatabase {
    /// Runs one statement of arbitrary SQL that must not change anything, and returns its columns
    /// and rows (at most `maxRows`). Three locks keep it read-only:
    /// - an authorizer (`sqlite3_set_authorizer`) while it compiles, which allows reading tables,
    ///   calling functions, recursive CTEs and the pragmas that only describe the schema, and
    ///   refuses everything else (writes, DDL, ATTACH, transactions, savepoints, setting pragmas);
    /// - `sqlite3_stmt_readonly` on the compiled statement;
    /// - `PRAGMA query_only` while it runs.
    ///
    /// Throws `.notReadOnly` for anything that would write, `.badQuery` for SQL that does not
    /// compile or holds more than one statement.
    package func readOnlyQuery(_ sql: String, maxRows: Int = .max) throws(StateMachineError) -> QueryResult {
        let statement = try compileReadOnly(sql)
        try exec("PRAGMA query_only = 1")
        defer { try? exec("PRAGMA query_only = 0") }
        let columns = (0..<statement.columnCount).map { statement.columnName(at: $0) }
        var rows: [[SQLiteValue]] = []
        var truncated = false
        while try statement.step() {
            if rows.count >= maxRows {
                truncated = true
                break
            }
            rows.append(statement.row())
        }
        statement.reset()
        return QueryResult(columns: columns, rows: rows, truncated: truncated)
    }

    private func compileReadOnly(_ sql: String) throws(StateMachineError) -> SQLiteStatement {
        // The authorizer notes what it refused here, so that the error can say it (SQLite reports
        // a refusal as a plain SQLITE_ERROR "not authorized").
        let refusals = AuthorizerRefusals()
        sqlite3_set_authorizer(handle, readOnlyAuthorizer, Unmanaged.passUnretained(refusals).toOpaque())
        defer {
            sqlite3_set_authorizer(handle, nil, nil)
            withExtendedLifetime(refusals) {}
        }

        var compiled: [SQLiteStatement] = []
        var failure: StateMachineError?
        var utf8 = Array(sql.utf8CString)
        utf8.withUnsafeMutableBufferPointer { buffer in
            guard let start = buffer.baseAddress else { return }
            var cursor: UnsafePointer<CChar>? = UnsafePointer(start)
            // The text may hold comments and empty statements around the one real statement.
            while let current = cursor, current.pointee != 0 {
                var statement: OpaquePointer?
                var tail: UnsafePointer<CChar>?
                let rc = sqlite3_prepare_v3(handle, current, -1, 0, &statement, &tail)
                if rc != SQLITE_OK {
                    let message = lastErrorMessage
                    if let refused = refusals.first {
                        failure = StateMachineError(
                            .notReadOnly, "refused, the query interface is read-only: \(refused) is not allowed", sqliteCode: rc)
                    } else {
                        failure = StateMachineError(.badQuery, "bad SQL: \(message)", sqliteCode: rc)
                    }
                    return
                }
                if let statement {
                    compiled.append(SQLiteStatement(connection: handle, handle: statement, sql: sql))
                }
                if compiled.count > 1 {
                    failure = StateMachineError(.badQuery, "give one SQL statement at a time")
                    return
                }
                cursor = tail
            }
        }
        if let failure { throw failure }
        guard let statement = compiled.first else {
            throw StateMachineError(.badQuery, "the query holds no SQL statement")
        }
        guard statement.isReadOnly else {
            throw StateMachineError(.notReadOnly, "refused, the query interface is read-only: `\(sql)` would write")
        }
        return statement
    }
}

/// Pragmas that only describe the database. Setting any pragma is refused by `sqlite3_stmt_readonly`
/// for those that write and by this list for the rest (`query_only`, `journal_mode`, ...).
private let describingPragmas: Set<String> = [
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "database_list", "collation_list", "function_list", "pragma_list",
    "module_list", "page_count", "page_size", "freelist_count", "schema_version", "user_version",
    "application_id", "encoding", "integrity_check", "quick_check", "compile_options", "data_version",
]

/// What the authorizer refused while one query compiled (the first refusal is the one reported).
private final class AuthorizerRefusals {
    var first: String?
}

/// The authorizer of `readOnlyQuery` (see there). A C function: it captures nothing; `userData`
/// is the `AuthorizerRefusals` of the query being compiled.
private func readOnlyAuthorizer(
    _ userData: UnsafeMutableRawPointer?, _ action: Int32, _ first: UnsafePointer<CChar>?,
    _ second: UnsafePointer<CChar>?, _ database: UnsafePointer<CChar>?, _ trigger: UnsafePointer<CChar>?
) -> Int32 {
    let verdict = readOnlyVerdict(action, first.map { String(cString: $0) }, second.map { String(cString: $0) })
    if verdict != SQLITE_OK, let userData {
        let refusals = Unmanaged<AuthorizerRefusals>.fromOpaque(userData).takeUnretainedValue()
        if refusals.first == nil {
            refusals.first = describe(action: action, first.map { String(cString: $0) }, second.map { String(cString: $0) })
        }
    }
    return verdict
}

private func readOnlyVerdict(_ action: Int32, _ first: String?, _ second: String?) -> Int32 {
    switch action {
    case SQLITE_SELECT, SQLITE_READ, SQLITE_RECURSIVE:
        return SQLITE_OK
    case SQLITE_FUNCTION:
        // `second` is the function name; extensions are off anyway, but never load one.
        if let second, second.lowercased() == "load_extension" { return SQLITE_DENY }
        return SQLITE_OK
    case SQLITE_UPDATE:
        // SQLite asks for this on the schema table when it first connects an eponymous virtual
        // table (the `pragma_table_info(...)` functions). A statement cannot really update the
        // schema table: SQLite refuses unless `writable_schema` is set, a pragma refused here,
        // and `sqlite3_stmt_readonly` would catch it anyway.
        if let first, ["sqlite_master", "sqlite_schema"].contains(first.lowercased()) { return SQLITE_OK }
        return SQLITE_DENY
    case SQLITE_PRAGMA:
        guard let first else { return SQLITE_DENY }
        let name = first.lowercased()
        guard describingPragmas.contains(name) else { return SQLITE_DENY }
        // A value for these would set them; for the others it names a table or an index.
        if second != nil, ["schema_version", "user_version", "application_id", "page_size", "encoding"].contains(name) {
            return SQLITE_DENY
        }
        return SQLITE_OK
    default:
        return SQLITE_DENY
    }
}

/// A readable name for a refused action, for the error message.
private func describe(action: Int32, _ first: String?, _ second: String?) -> String {
    let names: [Int32: String] = [
        SQLITE_INSERT: "INSERT", SQLITE_UPDATE: "UPDATE", SQLITE_DELETE: "DELETE", SQLITE_PRAGMA: "PRAGMA",
        SQLITE_TRANSACTION: "a transaction", SQLITE_ATTACH: "ATTACH", SQLITE_DETACH: "DETACH",
        SQLITE_SAVEPOINT: "SAVEPOINT", SQLITE_FUNCTION: "function", SQLITE_CREATE_TABLE: "CREATE TABLE",
        SQLITE_CREATE_TEMP_TABLE: "CREATE TEMP TABLE", SQLITE_DROP_TABLE: "DROP TABLE", SQLITE_CREATE_INDEX: "CREATE INDEX",
        SQLITE_ALTER_TABLE: "ALTER TABLE", SQLITE_REINDEX: "REINDEX", SQLITE_ANALYZE: "ANALYZE",
    ]
    let name = names[action] ?? "action \(action)"
    let arguments = [first, second].compactMap { $0 }
    return arguments.isEmpty ? name : "\(name) (\(arguments.joined(separator: ", ")))"
}
