import CSQLite

extension SQLiteDatabase {
    /// The whole `main` database as bytes (`sqlite3_serialize`): the same bytes a database file
    /// with this content would hold.
    package func serialize() throws(StateMachineError) -> [UInt8] {
        var size: sqlite3_int64 = 0
        guard let pointer = sqlite3_serialize(handle, "main", &size, 0) else {
            throw StateMachineError(.sqlite, "serializing the database: out of memory", sqliteCode: SQLITE_NOMEM)
        }
        defer { sqlite3_free(pointer) }
        return Array(UnsafeBufferPointer(start: pointer, count: Int(size)))
    }

    /// Replaces the `main` database with `bytes` from `serialize()` (`sqlite3_deserialize` into a
    /// copy that SQLite owns and may grow). Cached statements are dropped: they were compiled
    /// against the database that is gone. The caller checks the schema of what it restored.
    package func deserialize(_ bytes: [UInt8]) throws(StateMachineError) {
        guard !bytes.isEmpty else {
            throw StateMachineError(.badSnapshot, "the serialized database is empty")
        }
        if isInTransaction {
            throw StateMachineError(.invalidArgument, "cannot restore a database inside a transaction")
        }
        guard let buffer = sqlite3_malloc64(sqlite3_uint64(bytes.count)) else {
            throw StateMachineError(.sqlite, "restoring the database: out of memory", sqliteCode: SQLITE_NOMEM)
        }
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress { buffer.copyMemory(from: base, byteCount: source.count) }
        }
        statementCache.removeAll()
        let size = sqlite3_int64(bytes.count)
        let flags = UInt32(SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE)
        // On failure SQLite frees `buffer` itself (FREEONCLOSE).
        let rc = sqlite3_deserialize(handle, "main", buffer.assumingMemoryBound(to: UInt8.self), size, size, flags)
        guard rc == SQLITE_OK else {
            throw StateMachineError(.sqlite, "restoring the database: \(lastErrorMessage)", sqliteCode: rc)
        }
    }
}
