/// The answer to a read-only SQL query: column names and rows of typed values.
package struct QueryResult: Sendable, Hashable {
    package var columns: [String]
    package var rows: [[SQLiteValue]]
    /// True when the query had more rows than the caller's limit and `rows` stops at the limit.
    package var truncated: Bool

    package init(columns: [String], rows: [[SQLiteValue]], truncated: Bool = false) {
        self.columns = columns
        self.rows = rows
        self.truncated = truncated
    }
}
