/// Why the state machine could not do what it was asked. This is for failures of the machinery
/// (SQLite, a corrupt snapshot, an entry applied out of order), never for a committed command that
/// is invalid: such a command applies deterministically as a rejected `ApplyResult` on every member.
package struct StateMachineError: Error, Sendable, Hashable, CustomStringConvertible {
    package enum Code: String, Sendable, Hashable {
        /// SQLite returned an error; `sqliteCode` holds its extended result code.
        case sqlite
        /// A query given to the read-only interface would change the database, or is not allowed.
        case notReadOnly
        /// A query given to the read-only interface is not valid SQL (or is more than one statement).
        case badQuery
        /// `apply` was called with an index at or below the last index applied for that company.
        case indexOutOfOrder
        /// Snapshot bytes are truncated, corrupt, or of a schema this build does not know.
        case badSnapshot
        /// A stored value does not have the shape the schema promises (a corrupt or foreign database).
        case corruptTable
        /// An argument from the caller (not from the log) is out of range.
        case invalidArgument
        /// The heap does not exist yet: no bootstrap entry has been applied (503: not ready).
        case notBootstrapped
        /// A system call failed (mapping the heap, writing an export); the message names it and
        /// its errno.
        case system
    }

    package var code: Code
    package var message: String
    /// The SQLite extended result code when `code == .sqlite` (or when SQLite reported the failure).
    package var sqliteCode: Int32?

    package init(_ code: Code, _ message: String, sqliteCode: Int32? = nil) {
        self.code = code
        self.message = message
        self.sqliteCode = sqliteCode
    }

    package var description: String {
        if let sqliteCode { return "\(code.rawValue) (SQLite \(sqliteCode)): \(message)" }
        return "\(code.rawValue): \(message)"
    }
}
