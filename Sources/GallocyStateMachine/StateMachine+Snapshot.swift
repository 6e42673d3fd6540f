import GallocyCodec

// The state machine's snapshot: what a member stores before compacting its log and what a leader
// sends a follower that is too far behind.
//
//     magic "GSMS" | u32 format (1) | u32 company | u64 applied index
//     u64 length | page table snapshot (PageTable.snapshot(): "GPTS", SQLite image, CRC)
//     u8 has heap (0 before the bootstrap) | [u64 length | heap snapshot (HeapImage.snapshot(): "GHIS", CRC)]
//     u32 crc32c of every byte before it
//
// Integers are little-endian. Each part carries its own checksum as well, so a part can be
// checked (and, later, stored or sent) on its own.
extension StateMachine {
    static let snapshotMagic: [UInt8] = Array("GSMS".utf8)
    static let snapshotFormat: UInt32 = 1

    /// The whole state as of `appliedIndex`: the page table and the heap's non-zero pages.
    package func snapshot() throws(StateMachineError) -> [UInt8] {
        let table = try pageTable.snapshot()
        let heapBytes = heap?.snapshot()
        var writer = ByteWriter(capacity: 64 + table.count + (heapBytes?.count ?? 0))
        writer.writeRaw(Self.snapshotMagic)
        writer.write(Self.snapshotFormat)
        writer.write(company)
        writer.write(appliedIndex)
        writer.write(UInt64(table.count))
        writer.writeRaw(table)
        writer.write(heapBytes != nil)
        if let heapBytes {
            writer.write(UInt64(heapBytes.count))
            writer.writeRaw(heapBytes)
        }
        writer.appendChecksum()
        return writer.bytes
    }

    /// A state machine restored from `snapshot()` bytes.
    package convenience init(
        snapshot bytes: [UInt8], company: Company = 0,
        makeHeap: @escaping HeapFactory = { settings throws(StateMachineError) in try HeapImage(settings: settings) }
    ) throws(StateMachineError) {
        try self.init(company: company, makeHeap: makeHeap)
        try restore(from: bytes)
    }

    /// Replaces the whole state with a `snapshot()`, all or nothing: every part is checked (the
    /// envelope, the page table restored into a new database, every heap page decompressed) and
    /// the parts must agree (same company, the heap's settings are the page table's) before
    /// anything changes. Throws `.badSnapshot` and leaves the state machine as it was otherwise.
    /// The heap is restored in place when it has the snapshot's settings (the runtime's mapping
    /// stays valid), and made anew otherwise.
    package func restore(from bytes: [UInt8]) throws(StateMachineError) {
        let parts: SnapshotParts
        do {
            parts = try bytes.withUnsafeBytes { buffer in
                Result { () throws(CodecError) -> SnapshotParts in try Self.parseSnapshot(buffer) }
            }.get()
        } catch {
            throw StateMachineError(.badSnapshot, "state machine snapshot: \(error)")
        }
        guard parts.company == company else {
            throw StateMachineError(
                .badSnapshot, "the snapshot is of company \(parts.company), this state machine holds company \(company)"
            )
        }

        let table = try PageTable(snapshot: parts.table)
        let tableSettings = table.settings(company: company)
        if let tableIndex = table.appliedIndex(company: company), tableIndex > parts.appliedIndex {
            throw StateMachineError(
                .badSnapshot,
                "the page table has applied index \(tableIndex), beyond the snapshot's \(parts.appliedIndex)")
        }
        var restoredHeap: HeapImage?
        switch (tableSettings, parts.heap) {
        case (nil, nil):
            restoredHeap = nil
        case (let settings?, let heapBytes?):
            let heapSnapshot = try HeapImage.Snapshot(decoding: heapBytes)
            guard heapSnapshot.settings == settings else {
                throw StateMachineError(
                    .badSnapshot, "the heap snapshot has settings \(heapSnapshot.settings), the page table \(settings)")
            }
            let target: HeapImage
            if let heap, heap.settings == settings {
                target = heap
            } else {
                target = try makeHeapImage(settings)
            }
            // Cannot fail now: the snapshot is checked and its settings are the target's.
            try target.restore(from: heapSnapshot)
            restoredHeap = target
        case (nil, _?):
            throw StateMachineError(
                .badSnapshot, "the snapshot has a heap but its page table has no bootstrap settings")
        case (_?, nil):
            throw StateMachineError(.badSnapshot, "the snapshot's page table is bootstrapped but it has no heap")
        }
        replace(pageTable: table, heap: restoredHeap, appliedIndex: parts.appliedIndex)
        if let observer = restoredHeap?.leaseObserver {
            observer.applyLeaseEffects(try table.leaseEffectsFromTables(company: company))
        }
    }

    private struct SnapshotParts {
        var company: Company
        var appliedIndex: UInt64
        var table: [UInt8]
        var heap: [UInt8]?
    }

    private static func parseSnapshot(_ buffer: UnsafeRawBufferPointer) throws(CodecError) -> SnapshotParts {
        let body = try CRC32C.verifyTrailer(buffer, "state machine snapshot")
        var reader = ByteReader(body)
        try reader.expectHeader(magic: Self.snapshotMagic, format: Self.snapshotFormat, "state machine snapshot")
        let company = try reader.readUInt32("company")
        let appliedIndex = try reader.readUInt64("applied index")
        let table = try Self.readPart(&reader, "page table snapshot")
        let heap = try reader.readBool("heap flag") ? try Self.readPart(&reader, "heap snapshot") : nil
        try reader.expectEnd("state machine snapshot")
        return SnapshotParts(company: company, appliedIndex: appliedIndex, table: table, heap: heap)
    }

    private static func readPart(_ reader: inout ByteReader, _ what: String) throws(CodecError) -> [UInt8] {
        let length = try reader.readUInt64("\(what) length")
        guard length <= UInt64(reader.remaining) else {
            throw CodecError(.lengthOutOfRange, "\(what) of \(length) bytes, \(reader.remaining) left")
        }
        return try reader.readRaw(Int(length), what)
    }
}
