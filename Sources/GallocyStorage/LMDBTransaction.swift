import CLMDB
import Glibc

/// A transaction in an `LMDBEnvironment` (an `MDB_txn`), lent to the closure passed to
/// `LMDBEnvironment.read(_:)` or `LMDBEnvironment.write(_:)`.
///
/// The type is non-copyable and only ever borrowed, so it cannot outlive its closure. Values read
/// through it are `UnsafeRawBufferPointer`s into LMDB's memory map: zero-copy, and valid only
/// until the closure returns. Copy them (`Array(buffer)`) to keep them.
package struct LMDBTransaction: ~Copyable {
    let handle: OpaquePointer
    /// True for a read transaction; the mutating calls throw `EACCES` there.
    package let isReadOnly: Bool

    /// Makes the value lent to a transaction closure. Not inlined: Swift 6.3's generic
    /// specializer crashes (-O, "Cannot initialize a nonCopyable type with a guaranteed value")
    /// when it clones a generic function that builds a non-copyable struct in place.
    @inline(never)
    static func make(_ handle: OpaquePointer, isReadOnly: Bool) -> LMDBTransaction {
        LMDBTransaction(handle: handle, isReadOnly: isReadOnly)
    }

    /// The value stored under `key`, or nil when there is none. Wraps `mdb_get`.
    package func get(_ key: UnsafeRawBufferPointer, in database: LMDBDatabase) throws(LMDBError)
        -> UnsafeRawBufferPointer?
    {
        var k = MDB_val(key)
        var v = MDB_val()
        let rc = mdb_get(handle, database.handle, &k, &v)
        if rc == MDB_NOTFOUND { return nil }
        try LMDBError.check(rc, "reading a key of database '\(database.name)'")
        return v.buffer
    }

    /// The value stored under `key`, or nil when there is none. Wraps `mdb_get`.
    package func get(_ key: [UInt8], in database: LMDBDatabase) throws(LMDBError) -> UnsafeRawBufferPointer? {
        try withRawBytes(key) { k throws(LMDBError) in try get(k, in: database) }
    }

    /// Stores `value` under `key`, replacing what was there. Wraps `mdb_put`.
    ///
    /// - Parameter append: the key sorts after every key in the database (`MDB_APPEND`): LMDB
    ///   skips the search and packs pages fully. Fails with `MDB_KEYEXIST` when it does not.
    package func put(
        _ value: UnsafeRawBufferPointer, forKey key: UnsafeRawBufferPointer, in database: LMDBDatabase,
        append: Bool = false
    ) throws(LMDBError) {
        try requireWritable("writing to database '\(database.name)'")
        var k = MDB_val(key)
        var v = MDB_val(value)
        try LMDBError.check(
            mdb_put(handle, database.handle, &k, &v, append ? UInt32(MDB_APPEND) : 0),
            "writing to database '\(database.name)'")
    }

    /// Stores `value` under `key`, replacing what was there. Wraps `mdb_put`.
    package func put(_ value: [UInt8], forKey key: [UInt8], in database: LMDBDatabase, append: Bool = false)
        throws(LMDBError)
    {
        try withRawBytes(value) { v throws(LMDBError) in
            try withRawBytes(key) { k throws(LMDBError) in try put(v, forKey: k, in: database, append: append) }
        }
    }

    /// Reserves `count` bytes for the value under `key` and lets `fill` write them in place
    /// (`mdb_put` with `MDB_RESERVE`): no intermediate copy of the value.
    package func reserve(
        _ count: Int, forKey key: UnsafeRawBufferPointer, in database: LMDBDatabase, append: Bool = false,
        fill: (UnsafeMutableRawBufferPointer) -> Void
    ) throws(LMDBError) {
        try requireWritable("writing to database '\(database.name)'")
        var k = MDB_val(key)
        var v = MDB_val(mv_size: count, mv_data: nil)
        let flags = UInt32(MDB_RESERVE) | (append ? UInt32(MDB_APPEND) : 0)
        try LMDBError.check(mdb_put(handle, database.handle, &k, &v, flags), "writing to database '\(database.name)'")
        fill(UnsafeMutableRawBufferPointer(start: v.mv_data, count: count))
    }

    /// Deletes `key`; returns false when it was not there. Wraps `mdb_del`.
    @discardableResult
    package func delete(_ key: [UInt8], in database: LMDBDatabase) throws(LMDBError) -> Bool {
        try requireWritable("deleting from database '\(database.name)'")
        return try withRawBytes(key) { raw throws(LMDBError) in
            var k = MDB_val(raw)
            let rc = mdb_del(handle, database.handle, &k, nil)
            if rc == MDB_NOTFOUND { return false }
            try LMDBError.check(rc, "deleting from database '\(database.name)'")
            return true
        }
    }

    /// Deletes every key of `database`, keeping the database itself. Wraps `mdb_drop(…, 0)`.
    package func removeAll(in database: LMDBDatabase) throws(LMDBError) {
        try requireWritable("emptying database '\(database.name)'")
        try LMDBError.check(mdb_drop(handle, database.handle, 0), "emptying database '\(database.name)'")
    }

    /// The number of keys in `database`. Wraps `mdb_stat`.
    package func count(in database: LMDBDatabase) throws(LMDBError) -> Int {
        var stat = MDB_stat()
        try LMDBError.check(
            mdb_stat(handle, database.handle, &stat), "reading statistics of database '\(database.name)'")
        return stat.ms_entries
    }

    /// Opens a cursor on `database` for the duration of `body`, then closes it. Wraps
    /// `mdb_cursor_open` and `mdb_cursor_close`.
    package func withCursor<R>(on database: LMDBDatabase, _ body: (borrowing LMDBCursor) throws -> R) throws -> R {
        var cursor: OpaquePointer?
        try LMDBError.check(
            mdb_cursor_open(handle, database.handle, &cursor), "opening a cursor on database '\(database.name)'")
        guard let cursor else { throw LMDBError(EINVAL, "opening a cursor on database '\(database.name)'") }
        // A cursor may be closed before its transaction ends in both kinds of transaction; read
        // transactions require it, so the wrapper always does.
        defer { mdb_cursor_close(cursor) }
        return try body(LMDBCursor.make(cursor, database, isReadOnly: isReadOnly))
    }

    private func requireWritable(_ context: @autoclosure () -> String) throws(LMDBError) {
        if isReadOnly { throw LMDBError(EACCES, context() + " in a read transaction") }
    }
}

extension MDB_val {
    /// Points at `buffer` without copying; LMDB only reads keys and values passed in.
    init(_ buffer: UnsafeRawBufferPointer) {
        self.init(mv_size: buffer.count, mv_data: UnsafeMutableRawPointer(mutating: buffer.baseAddress))
    }

    var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: mv_data, count: mv_size) }
}

/// `Array.withUnsafeBytes` with a typed error (the standard library's version only rethrows).
@inline(__always)
func withRawBytes<R, E: Error>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
    try bytes.withUnsafeBytes { raw in Result { () throws(E) in try body(raw) } }.get()
}
