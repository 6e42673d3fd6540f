import CSQLite
import GallocyCodec

// The canonical dump (what members compare) and snapshots (what Raft ships and stores).
extension PageTable {
    /// Every table, rows ordered by primary key, as text that depends only on the rows: two
    /// members that applied the same entries produce the same dump, byte for byte.
    ///
    /// Format: a first line naming the schema version, then per table a line
    /// `table <name> (<columns>)` followed by one line per row, its values separated by tabs
    /// (integers in decimal, text single-quoted, blobs as `x'..'`, `NULL`).
    package func canonicalDump() throws(StateMachineError) -> String {
        try prepareForReading()
        var dump = "gallocy page table, schema \(Self.schemaVersion)\n"
        for table in Self.tables {
            // Table and key names come from the fixed list above, never from input.
            let statement = try database.cached("SELECT * FROM \(table.name) ORDER BY \(table.primaryKey)")
            defer { statement.reset() }
            let columns = (0..<statement.columnCount).map { statement.columnName(at: $0) }
            dump += "table \(table.name) (\(columns.joined(separator: ", ")))\n"
            while try statement.step() {
                dump += statement.row().map(\.canonicalText).joined(separator: "\t")
                dump += "\n"
            }
        }
        return dump
    }

    /// CRC-32C of the canonical dump: a short value members can compare.
    package func digest() throws(StateMachineError) -> UInt32 {
        CRC32C.checksum(Array(try canonicalDump().utf8))
    }

    private static let snapshotMagic: [UInt8] = Array("GPTS".utf8)
    private static let snapshotFormat: UInt32 = 1

    /// The whole page table as bytes, for a Raft snapshot: a header (magic `GPTS`, format,
    /// schema version, length), the SQLite database image (`sqlite3_serialize`), and a CRC-32C
    /// trailer. The image is not canonical (SQLite's page layout depends on history): compare
    /// members with `digest()`, not with snapshot bytes.
    package func snapshot() throws(StateMachineError) -> [UInt8] {
        try prepareForReading()
        if database.isInTransaction {
            throw StateMachineError(.invalidArgument, "cannot snapshot the page table inside a transaction or batch")
        }
        let image = try database.serialize()
        var writer = ByteWriter(capacity: image.count + 24)
        writer.writeRaw(Self.snapshotMagic)
        writer.write(Self.snapshotFormat)
        writer.write(UInt32(bitPattern: Self.schemaVersion))
        writer.write(UInt64(image.count))
        writer.writeRaw(image)
        writer.appendChecksum()
        return writer.bytes
    }

    /// Replaces the whole page table with a `snapshot()`. The bytes are checked (checksum, header,
    /// schema version, SQLite's `quick_check`) and restored into a new connection first, so a bad
    /// snapshot throws `.badSnapshot` and leaves this page table as it was. A snapshot of an older
    /// schema (down to `oldestRestorableSchemaVersion`) is migrated to this build's (`migrate`).
    package func restore(snapshot bytes: [UInt8]) throws(StateMachineError) {
        let image: [UInt8]
        var schema = Self.schemaVersion
        do {
            // (Returning the schema with the image as a tuple crashes the Swift 6.3 compiler.)
            image = try bytes.withUnsafeBytes { buffer throws(CodecError) -> [UInt8] in
                let body = try CRC32C.verifyTrailer(buffer, "page table snapshot")
                var reader = ByteReader(body)
                try reader.expectHeader(magic: Self.snapshotMagic, format: Self.snapshotFormat, "page table snapshot")
                let rawSchema = try reader.readUInt32("schema version")
                schema = Int32(truncatingIfNeeded: rawSchema)
                guard rawSchema <= UInt32(Self.schemaVersion), schema >= Self.oldestRestorableSchemaVersion else {
                    throw CodecError(
                        .unknownVersion,
                        "page table schema \(rawSchema), this build restores \(Self.oldestRestorableSchemaVersion) to \(Self.schemaVersion)")
                }
                let length = try reader.readUInt64("image length")
                guard length <= UInt64(reader.remaining) else {
                    throw CodecError(.lengthOutOfRange, "image of \(length) bytes, \(reader.remaining) left")
                }
                let image = try reader.readRaw(Int(length), "database image")
                try reader.expectEnd("page table snapshot")
                return image
            }
        } catch {
            throw StateMachineError(.badSnapshot, "page table snapshot: \(error)")
        }

        let restored = try SQLiteDatabase()
        do throws(StateMachineError) {
            try restored.deserialize(image)
            let version = try restored.firstRow("PRAGMA user_version", []) { Int32(truncatingIfNeeded: $0.int64(at: 0)) }
            guard version == schema else {
                throw StateMachineError(
                    .badSnapshot, "the restored database has schema \(version ?? 0), its snapshot header says \(schema)")
            }
            let check = try restored.firstRow("PRAGMA quick_check", []) { $0.text(at: 0) }
            guard check == "ok" else {
                throw StateMachineError(.badSnapshot, "the restored database fails SQLite's quick_check: \(check ?? "no answer")")
            }
            try Self.migrate(restored, from: schema)
        } catch {
            if error.code == .badSnapshot { throw error }
            throw StateMachineError(.badSnapshot, "page table snapshot does not restore: \(error)", sqliteCode: error.sqliteCode)
        }
        try replaceDatabase(restored)
    }
}
