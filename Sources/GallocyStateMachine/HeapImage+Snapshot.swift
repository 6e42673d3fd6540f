import CLZ4
import GallocyCodec

// The heap's part of a snapshot: only the pages that are not zero, each LZ4-compressed.
//
//     magic "GHIS" | u32 format (1)
//     u64 cluster id | u64 heap base | u64 heap size | u32 page size
//     u64 page count
//     page count × { u64 page number | u32 compressed length | compressed page }
//     u32 crc32c of every byte before it
//
// Integers are little-endian. Pages are in strictly increasing order, each below the heap's page
// count, and each decompresses (LZ4 block format) to exactly one page. The bytes come from disk or
// from a peer, so restoring checks all of that, page by page, before it changes anything.
extension HeapImage {
    static let snapshotMagic: [UInt8] = Array("GHIS".utf8)
    static let snapshotFormat: UInt32 = 1
    /// Bytes of the header before the first page record.
    private static let snapshotHeaderSize = 4 + 4 + 8 + 8 + 8 + 4 + 8
    /// Bytes of a page record before its compressed data.
    private static let pageRecordHeaderSize = 8 + 4

    /// The heap's content as snapshot bytes (format above).
    package func snapshot() -> [UInt8] {
        let bound = Int(LZ4_compressBound(Int32(pageSize)))
        var writer = ByteWriter(capacity: 64)
        writer.writeRaw(Self.snapshotMagic)
        writer.write(Self.snapshotFormat)
        writer.write(settings.clusterID)
        writer.write(settings.heapBase)
        writer.write(settings.heapSize)
        writer.write(settings.pageSize)
        // The count comes first: the records are written after it and the count patched in.
        let countAt = writer.bytes.count
        writer.write(UInt64(0))
        var count: UInt64 = 0
        withUnsafeTemporaryAllocation(byteCount: bound, alignment: 8) { scratch in
            let destination = scratch.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: CChar.self)
            // Through `forEachNonZeroPage`, so that an image under a runtime writer snapshots the
            // committed contents, never an application's uncommitted writes.
            forEachNonZeroPage { page, bytes in
                count += 1
                let source = bytes.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: CChar.self)
                let written = LZ4_compress_default(source, destination, Int32(pageSize), Int32(bound))
                // LZ4 cannot fail with a destination of LZ4_compressBound bytes.
                precondition(written > 0, "LZ4_compress_default failed on a \(pageSize)-byte page")
                writer.write(UInt64(page))
                writer.write(UInt32(written))
                writer.writeRaw(UnsafeRawBufferPointer(start: scratch.baseAddress, count: Int(written)))
            }
        }
        writer.patch(count, at: countAt)
        writer.appendChecksum()
        return writer.bytes
    }

    /// Replaces the heap's content with that of `bytes` (a `snapshot()`), all or nothing: the
    /// snapshot is checked completely first (`Snapshot(decoding:)`), and its settings must be
    /// this heap's. Throws `.badSnapshot` and changes nothing when it is not.
    package func restore(from bytes: [UInt8]) throws(StateMachineError) {
        try restore(from: try Snapshot(decoding: bytes))
    }

    /// Replaces the heap's content with that of a checked snapshot whose settings are this heap's.
    package func restore(from snapshot: Snapshot) throws(StateMachineError) {
        guard snapshot.settings == settings else {
            throw StateMachineError(
                .badSnapshot, "the heap snapshot is of a heap with \(snapshot.settings), this heap has \(settings)")
        }
        if writer != nil { return restoreThroughWriter(snapshot) }
        zeroAll()
        snapshot.bytes.withUnsafeBytes { buffer in
            let source = buffer.baseAddress.unsafelyUnwrapped
            for record in snapshot.pages {
                touched.insert(record.page)
                // Checked by Snapshot(decoding:): each record decompresses to exactly one page.
                _ = LZ4_decompress_safe(
                    (source + record.offset).assumingMemoryBound(to: CChar.self),
                    (base + record.page * pageSize).assumingMemoryBound(to: CChar.self),
                    Int32(record.length), Int32(pageSize))
            }
        }
    }

    /// A heap snapshot whose every byte has been checked: the checksum, the header, the order and
    /// range of the page numbers, and that each page decompresses to exactly one page. Restoring
    /// a checked snapshot cannot fail halfway.
    package struct Snapshot: Sendable {
        /// The settings of the heap the snapshot was taken of.
        package let settings: ClusterSettings
        /// The snapshot bytes.
        let bytes: [UInt8]
        /// Each non-zero page: its number, and where its compressed data lies in `bytes`.
        let pages: [(page: Int, offset: Int, length: Int)]

        /// How many non-zero pages the snapshot holds.
        package var pageCount: Int { pages.count }

        /// Checks `bytes` completely; throws `.badSnapshot` naming the first problem.
        package init(decoding bytes: [UInt8]) throws(StateMachineError) {
            do {
                let parsed = try bytes.withUnsafeBytes { buffer in
                    Result { () throws(CodecError) -> Parsed in try Self.parse(buffer) }
                }.get()
                settings = parsed.settings
                pages = parsed.pages
            } catch {
                throw StateMachineError(.badSnapshot, "heap snapshot: \(error)")
            }
            self.bytes = bytes
        }

        private struct Parsed {
            var settings: ClusterSettings
            var pages: [(page: Int, offset: Int, length: Int)]
        }

        private static func parse(_ buffer: UnsafeRawBufferPointer) throws(CodecError) -> Parsed {
            let body = try CRC32C.verifyTrailer(buffer, "heap snapshot")
            var reader = ByteReader(body)
            try reader.expectHeader(magic: HeapImage.snapshotMagic, format: HeapImage.snapshotFormat, "heap snapshot")
            let settings = ClusterSettings(
                clusterID: try reader.readUInt64("cluster id"), heapBase: try reader.readUInt64("heap base"),
                heapSize: try reader.readUInt64("heap size"), pageSize: try reader.readUInt32("page size"))
            if let problem = HeapImage.problem(with: settings) { throw CodecError(.invalidValue, problem) }
            let pageSize = Int(settings.pageSize)
            let heapPages = Int(settings.heapSize) / pageSize
            let count = try reader.readUInt64("page count")
            guard count <= UInt64(heapPages), count <= UInt64(reader.remaining / HeapImage.pageRecordHeaderSize) else {
                throw CodecError(
                    .lengthOutOfRange,
                    "\(count) pages, more than the heap's \(heapPages) or than \(reader.remaining) bytes can hold")
            }
            let bound = Int(LZ4_compressBound(Int32(pageSize)))
            var pages: [(page: Int, offset: Int, length: Int)] = []
            pages.reserveCapacity(Int(count))
            var previous = -1
            try withUnsafeTemporaryAllocation(byteCount: pageSize, alignment: 8) { (scratch) throws(CodecError) in
                for i in 0..<Int(count) {
                    let rawPage = try reader.readUInt64("page number of page record \(i)")
                    guard rawPage < UInt64(heapPages), Int(rawPage) > previous else {
                        throw CodecError(
                            .invalidValue,
                            "page record \(i) is for page \(rawPage): pages must rise and stay below \(heapPages)")
                    }
                    let length = Int(try reader.readUInt32("compressed length of page \(rawPage)"))
                    guard length > 0, length <= bound else {
                        throw CodecError(
                            .lengthOutOfRange, "page \(rawPage) compressed to \(length) bytes, limit \(bound)")
                    }
                    let offset = reader.offset
                    let compressed = try reader.readSlice(length, "compressed page \(rawPage)")
                    let produced = LZ4_decompress_safe(
                        compressed.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: CChar.self),
                        scratch.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: CChar.self),
                        Int32(length), Int32(pageSize))
                    guard produced == Int32(pageSize) else {
                        throw CodecError(
                            .invalidValue,
                            "page \(rawPage) does not decompress to \(pageSize) bytes (LZ4_decompress_safe: \(produced))"
                        )
                    }
                    previous = Int(rawPage)
                    pages.append((Int(rawPage), offset, length))
                }
            }
            try reader.expectEnd("heap snapshot")
            return Parsed(settings: settings, pages: pages)
        }
    }
}
