import CLMDB
import Glibc

/// A cursor over one database (an `MDB_cursor`), lent to the closure passed to
/// `LMDBTransaction.withCursor(on:_:)`. Keys and values it returns point into LMDB's memory map
/// and are valid until the transaction ends.
package struct LMDBCursor: ~Copyable {
    /// A key and its value, both zero-copy.
    package typealias Item = (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)

    let handle: OpaquePointer
    let database: LMDBDatabase
    let isReadOnly: Bool

    /// Makes the value lent to a cursor closure; not inlined, see `LMDBTransaction.make`.
    @inline(never)
    static func make(_ handle: OpaquePointer, _ database: LMDBDatabase, isReadOnly: Bool) -> LMDBCursor {
        LMDBCursor(handle: handle, database: database, isReadOnly: isReadOnly)
    }

    /// Moves to the first key. Wraps `mdb_cursor_get(MDB_FIRST)`.
    package func first() throws(LMDBError) -> Item? { try get(MDB_FIRST, "first") }
    /// Moves to the last key. Wraps `mdb_cursor_get(MDB_LAST)`.
    package func last() throws(LMDBError) -> Item? { try get(MDB_LAST, "last") }
    /// Moves to the next key. Wraps `mdb_cursor_get(MDB_NEXT)`.
    package func next() throws(LMDBError) -> Item? { try get(MDB_NEXT, "next") }
    /// Moves to the previous key. Wraps `mdb_cursor_get(MDB_PREV)`.
    package func previous() throws(LMDBError) -> Item? { try get(MDB_PREV, "previous") }
    /// The item under the cursor. Wraps `mdb_cursor_get(MDB_GET_CURRENT)`.
    package func current() throws(LMDBError) -> Item? { try get(MDB_GET_CURRENT, "current") }

    /// Moves to the first key at or after `key`. Wraps `mdb_cursor_get(MDB_SET_RANGE)`.
    package func seek(atLeast key: [UInt8]) throws(LMDBError) -> Item? {
        try withRawBytes(key) { raw throws(LMDBError) in
            var k = MDB_val(raw)
            var v = MDB_val()
            return try finish(mdb_cursor_get(handle, &k, &v, MDB_SET_RANGE), k, v, "seek")
        }
    }

    /// Deletes the item under the cursor. Wraps `mdb_cursor_del`. Afterwards `next()` returns
    /// the item that followed the deleted one (LMDB remembers that the cursor's item was deleted).
    package func deleteCurrent() throws(LMDBError) {
        if isReadOnly { throw LMDBError(EACCES, "deleting through a cursor of a read transaction") }
        try LMDBError.check(mdb_cursor_del(handle, 0), "deleting through a cursor on database '\(database.name)'")
    }

    private func get(_ op: MDB_cursor_op, _ what: String) throws(LMDBError) -> Item? {
        var k = MDB_val()
        var v = MDB_val()
        return try finish(mdb_cursor_get(handle, &k, &v, op), k, v, what)
    }

    private func finish(_ rc: Int32, _ k: MDB_val, _ v: MDB_val, _ what: String) throws(LMDBError) -> Item? {
        // MDB_GET_CURRENT after the last item was deleted answers EINVAL: there is no item.
        if rc == MDB_NOTFOUND || (rc == EINVAL && what == "current") { return nil }
        try LMDBError.check(rc, "cursor \(what) in database '\(database.name)'")
        return (k.buffer, v.buffer)
    }
}
