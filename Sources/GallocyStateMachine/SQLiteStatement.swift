import CSQLite

/// A prepared SQLite statement (`sqlite3_stmt`). Prepare once, then for each use: bind, step until
/// it returns false, and `reset()`. Parameter and column indexes follow SQLite: parameters count
/// from 1, columns from 0.
///
/// Not thread-safe: it belongs to the `SQLiteDatabase` that prepared it and to that database's
/// owner (see `SQLiteDatabase`).
package final class SQLiteStatement {
    /// The statement handle, finalized when this object goes away.
    package let handle: OpaquePointer
    /// The connection, for error messages only. Not retained: the database keeps its cached
    /// statements, and `sqlite3_close_v2` keeps the connection usable until the last statement of
    /// it is finalized, so an uncached statement that outlives its database is still safe.
    private let connection: OpaquePointer
    /// The SQL text, for error messages.
    package let sql: String

    init(connection: OpaquePointer, handle: OpaquePointer, sql: String) {
        self.connection = connection
        self.handle = handle
        self.sql = sql
    }

    deinit { sqlite3_finalize(handle) }

    /// `SQLITE_TRANSIENT`: SQLite copies bound text and blobs before the bind call returns, so
    /// Swift buffers may go away right after. (The C macro is a cast that Swift does not import.)
    private static var transient: sqlite3_destructor_type {
        unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)
    }

    /// `what` is an autoclosure: building the message on every bind would cost more than the bind.
    private func check(_ rc: Int32, _ what: @autoclosure () -> String) throws(StateMachineError) {
        guard rc == SQLITE_OK else {
            throw StateMachineError(
                .sqlite, "\(what()) in `\(sql)`: \(String(cString: sqlite3_errmsg(connection)))", sqliteCode: rc)
        }
    }

    // MARK: Bindings (sqlite3_bind_*)

    /// Binds `value` to parameter `index` (`sqlite3_bind_int64`).
    package func bind(_ value: Int64, at index: Int32) throws(StateMachineError) {
        try check(sqlite3_bind_int64(handle, index, value), "binding parameter \(index)")
    }

    /// Binds `value` as the `Int64` with the same bit pattern (`sqlite3_bind_int64`).
    package func bind(_ value: UInt64, at index: Int32) throws(StateMachineError) {
        try bind(Int64(bitPattern: value), at: index)
    }

    /// Binds `value` to parameter `index` (`sqlite3_bind_double`).
    package func bind(_ value: Double, at index: Int32) throws(StateMachineError) {
        try check(sqlite3_bind_double(handle, index, value), "binding parameter \(index)")
    }

    /// Binds `value` as UTF-8 text, copied by SQLite (`sqlite3_bind_text`, `SQLITE_TRANSIENT`).
    package func bind(_ value: String, at index: Int32) throws(StateMachineError) {
        var value = value
        let rc: Int32 = value.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { chars in
                guard let base = chars.baseAddress else { return sqlite3_bind_text(handle, index, "", 0, Self.transient) }
                return sqlite3_bind_text(handle, index, base, Int32(chars.count), Self.transient)
            }
        }
        try check(rc, "binding parameter \(index)")
    }

    /// Binds `value` as a blob, copied by SQLite (`sqlite3_bind_blob`, `SQLITE_TRANSIENT`).
    /// An empty array binds an empty blob, not NULL.
    package func bind(_ value: [UInt8], at index: Int32) throws(StateMachineError) {
        let rc: Int32 = value.withUnsafeBytes { bytes in
            // A null pointer would bind NULL; an empty blob is a zero-length blob.
            guard let base = bytes.baseAddress else { return sqlite3_bind_zeroblob(handle, index, 0) }
            return sqlite3_bind_blob(handle, index, base, Int32(bytes.count), Self.transient)
        }
        try check(rc, "binding parameter \(index)")
    }

    /// Binds SQL NULL to parameter `index` (`sqlite3_bind_null`).
    package func bindNull(at index: Int32) throws(StateMachineError) {
        try check(sqlite3_bind_null(handle, index), "binding parameter \(index)")
    }

    /// Binds any `SQLiteValue` to parameter `index`.
    package func bind(_ value: SQLiteValue, at index: Int32) throws(StateMachineError) {
        switch value {
        case .null: try bindNull(at: index)
        case .integer(let v): try bind(v, at: index)
        case .real(let v): try bind(v, at: index)
        case .text(let v): try bind(v, at: index)
        case .blob(let v): try bind(v, at: index)
        }
    }

    /// Binds `values` to parameters 1, 2, ...
    package func bind(_ values: [SQLiteValue]) throws(StateMachineError) {
        for (offset, value) in values.enumerated() { try bind(value, at: Int32(offset + 1)) }
    }

    /// The number of parameters (`sqlite3_bind_parameter_count`).
    package var parameterCount: Int32 { sqlite3_bind_parameter_count(handle) }

    // MARK: Stepping

    /// Runs the statement to its next row (`sqlite3_step`): true when a row is ready to read,
    /// false when the statement is done. On an error the statement is reset before throwing.
    @discardableResult
    package func step() throws(StateMachineError) -> Bool {
        let rc = sqlite3_step(handle)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            let message = String(cString: sqlite3_errmsg(connection))
            sqlite3_reset(handle)
            throw StateMachineError(.sqlite, "running `\(sql)`: \(message)", sqliteCode: rc)
        }
    }

    /// Makes the statement ready to run again (`sqlite3_reset`); bindings are kept. Errors of the
    /// last step were already reported by `step()`, so the result code is not looked at here.
    package func reset() { sqlite3_reset(handle) }

    /// Clears all bindings to NULL (`sqlite3_clear_bindings`).
    package func clearBindings() { sqlite3_clear_bindings(handle) }

    /// Whether the statement can change the database (`sqlite3_stmt_readonly`).
    package var isReadOnly: Bool { sqlite3_stmt_readonly(handle) != 0 }

    // MARK: Columns (sqlite3_column_*)

    /// The number of result columns (`sqlite3_column_count`).
    package var columnCount: Int32 { sqlite3_column_count(handle) }

    /// The name of result column `index` (`sqlite3_column_name`).
    package func columnName(at index: Int32) -> String {
        guard let name = sqlite3_column_name(handle, index) else { return "column\(index)" }
        return String(cString: name)
    }

    /// Whether column `index` of the current row is NULL.
    package func isNull(at index: Int32) -> Bool { sqlite3_column_type(handle, index) == SQLITE_NULL }

    /// Column `index` of the current row as an `Int64` (`sqlite3_column_int64`; NULL reads as 0).
    package func int64(at index: Int32) -> Int64 { sqlite3_column_int64(handle, index) }

    /// Column `index` as the `UInt64` with the same bits as the stored `Int64`.
    package func uint64(at index: Int32) -> UInt64 { UInt64(bitPattern: sqlite3_column_int64(handle, index)) }

    /// Column `index` as a `UInt64`, or nil when it is NULL.
    package func optionalUInt64(at index: Int32) -> UInt64? { isNull(at: index) ? nil : uint64(at: index) }

    /// Column `index` as a `Double` (`sqlite3_column_double`).
    package func double(at index: Int32) -> Double { sqlite3_column_double(handle, index) }

    /// Column `index` as text (`sqlite3_column_text`; NULL reads as the empty string).
    package func text(at index: Int32) -> String {
        guard let pointer = sqlite3_column_text(handle, index) else { return "" }
        let count = Int(sqlite3_column_bytes(handle, index))
        return String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
    }

    /// Column `index` as bytes (`sqlite3_column_blob`; NULL reads as empty).
    package func blob(at index: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(handle, index))
        guard count > 0, let pointer = sqlite3_column_blob(handle, index) else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    /// Column `index` as the typed value SQLite holds.
    package func value(at index: Int32) -> SQLiteValue {
        switch sqlite3_column_type(handle, index) {
        case SQLITE_INTEGER: return .integer(int64(at: index))
        case SQLITE_FLOAT: return .real(double(at: index))
        case SQLITE_TEXT: return .text(text(at: index))
        case SQLITE_BLOB: return .blob(blob(at: index))
        default: return .null
        }
    }

    /// All columns of the current row.
    package func row() -> [SQLiteValue] { (0..<columnCount).map { value(at: $0) } }
}
