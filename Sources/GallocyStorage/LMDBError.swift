import CLMDB

/// An error returned by LMDB: the `MDB_` return code (or the `errno` value that LMDB passes
/// through), LMDB's own message for it (`mdb_strerror`), and what we were doing when it happened.
///
/// Match on `code`: `catch let error as LMDBError where error.code == MDB_NOTFOUND`.
package struct LMDBError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The `MDB_` code (negative) or `errno` value (positive).
    package var code: Int32
    /// `mdb_strerror(code)`.
    package var message: String
    /// What the wrapper was doing, for a person reading the error.
    package var context: String

    package init(_ code: Int32, _ context: String) {
        self.code = code
        self.context = context
        message = mdb_strerror(code).map { String(cString: $0) } ?? "error \(code)"
    }

    /// The symbolic name of `code` (`MDB_MAP_FULL`, `errno 28`).
    package var codeName: String {
        switch code {
        case MDB_KEYEXIST: "MDB_KEYEXIST"
        case MDB_NOTFOUND: "MDB_NOTFOUND"
        case MDB_PAGE_NOTFOUND: "MDB_PAGE_NOTFOUND"
        case MDB_CORRUPTED: "MDB_CORRUPTED"
        case MDB_PANIC: "MDB_PANIC"
        case MDB_VERSION_MISMATCH: "MDB_VERSION_MISMATCH"
        case MDB_INVALID: "MDB_INVALID"
        case MDB_MAP_FULL: "MDB_MAP_FULL"
        case MDB_DBS_FULL: "MDB_DBS_FULL"
        case MDB_READERS_FULL: "MDB_READERS_FULL"
        case MDB_TXN_FULL: "MDB_TXN_FULL"
        case MDB_CURSOR_FULL: "MDB_CURSOR_FULL"
        case MDB_PAGE_FULL: "MDB_PAGE_FULL"
        case MDB_MAP_RESIZED: "MDB_MAP_RESIZED"
        case MDB_INCOMPATIBLE: "MDB_INCOMPATIBLE"
        case MDB_BAD_RSLOT: "MDB_BAD_RSLOT"
        case MDB_BAD_TXN: "MDB_BAD_TXN"
        case MDB_BAD_VALSIZE: "MDB_BAD_VALSIZE"
        case MDB_BAD_DBI: "MDB_BAD_DBI"
        default: "errno \(code)"
        }
    }

    /// True for the codes by which LMDB says its file is damaged or is not an LMDB file at all.
    package var isCorruption: Bool {
        [MDB_CORRUPTED, MDB_PAGE_NOTFOUND, MDB_INVALID, MDB_VERSION_MISMATCH, MDB_PANIC, MDB_INCOMPATIBLE]
            .contains(code)
    }

    package var description: String { "\(context): \(message) (\(codeName))" }

    /// Throws an `LMDBError` unless `rc` is `MDB_SUCCESS`.
    @inline(__always)
    static func check(_ rc: Int32, _ context: @autoclosure () -> String) throws(LMDBError) {
        if rc != MDB_SUCCESS { throw LMDBError(rc, context()) }
    }
}
