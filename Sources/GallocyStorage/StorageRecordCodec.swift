import GallocyCodec
import GallocyRaft

/// The encodings of the records that storage owns (everything but log entries, which use
/// `EntryCodec`). Each starts with a version byte and ends with the CRC32C of every byte before
/// it; integers are little-endian. Decoders treat their input as hostile. Formats in
/// docs/storage.md.
enum StorageRecordCodec {
    static let version: UInt8 = 1
    /// Identifies the `format` record of a Gallocy data directory.
    static let magic = Array("GALLOCYD".utf8)
    /// The most members a stored configuration may list (keeps a corrupt count from allocating).
    static let maxMembers = 4096

    // MARK: format

    static func encodeFormat(layoutVersion: UInt16) -> [UInt8] {
        var w = ByteWriter(capacity: 16)
        w.writeRaw(magic)
        w.write(layoutVersion)
        w.appendChecksum()
        return w.bytes
    }

    /// The layout version of a `format` record.
    static func decodeFormat(_ bytes: UnsafeRawBufferPointer) throws(CodecError) -> UInt16 {
        try decode(bytes, "format record", versioned: false) { r throws(CodecError) in
            let m = try r.readRaw(magic.count, "magic")
            guard m == magic else {
                throw CodecError(.invalidValue, "format record does not start with the Gallocy magic")
            }
            return try r.readUInt16("layout version")
        }
    }

    // MARK: hard state

    static func encode(_ state: HardState) -> [UInt8] {
        record { w in
            w.write(state.term)
            w.write(state.vote)
            w.write(state.commit)
        }
    }

    static func decodeHardState(_ bytes: UnsafeRawBufferPointer) throws(CodecError) -> HardState {
        try decode(bytes, "hard state") { r throws(CodecError) in
            HardState(
                term: try r.readUInt64("term"), vote: try r.readUInt64("vote"), commit: try r.readUInt64("commit"))
        }
    }

    // MARK: cluster settings

    static func encode(_ settings: ClusterSettings) -> [UInt8] {
        record { w in
            w.write(settings.clusterID)
            w.write(settings.heapBase)
            w.write(settings.heapSize)
            w.write(settings.pageSize)
        }
    }

    static func decodeSettings(_ bytes: UnsafeRawBufferPointer) throws(CodecError) -> ClusterSettings {
        try decode(bytes, "cluster settings") { r throws(CodecError) in
            ClusterSettings(
                clusterID: try r.readUInt64("cluster id"), heapBase: try r.readUInt64("heap base"),
                heapSize: try r.readUInt64("heap size"), pageSize: try r.readUInt32("page size"))
        }
    }

    // MARK: conf state

    static func encode(_ conf: ConfState) -> [UInt8] {
        record { w in write(conf, to: &w) }
    }

    static func decodeConfState(_ bytes: UnsafeRawBufferPointer) throws(CodecError) -> ConfState {
        try decode(bytes, "conf state") { r throws(CodecError) in try readConfState(&r) }
    }

    private static func write(_ conf: ConfState, to w: inout ByteWriter) {
        for list in [conf.voters, conf.learners, conf.votersOutgoing] {
            w.writeVarint(UInt64(list.count))
            for id in list { w.write(id) }
        }
    }

    private static func readConfState(_ r: inout ByteReader) throws(CodecError) -> ConfState {
        var lists: [[NodeID]] = []
        for name in ["voters", "learners", "outgoing voters"] {
            let count = try r.readCount(name, limit: maxMembers, minimumElementSize: 8)
            var list: [NodeID] = []
            list.reserveCapacity(count)
            for _ in 0..<count { list.append(try r.readUInt64(name)) }
            lists.append(list)
        }
        return ConfState(voters: lists[0], learners: lists[1], votersOutgoing: lists[2])
    }

    // MARK: compaction point, snapshot pointer

    static func encode(_ point: CompactionPoint) -> [UInt8] {
        record { w in
            w.write(point.index)
            w.write(point.term)
        }
    }

    static func decodeCompactionPoint(_ bytes: UnsafeRawBufferPointer) throws(CodecError) -> CompactionPoint {
        try decode(bytes, "compaction point") { r throws(CodecError) in
            CompactionPoint(index: try r.readUInt64("index"), term: try r.readUInt64("term"))
        }
    }

    static func encode(_ pointer: SnapshotPointer) -> [UInt8] {
        record { w in
            w.write(pointer.id)
            w.write(pointer.index)
            w.write(pointer.term)
        }
    }

    static func decodeSnapshotPointer(_ bytes: UnsafeRawBufferPointer) throws(CodecError) -> SnapshotPointer {
        try decode(bytes, "snapshot pointer") { r throws(CodecError) in
            SnapshotPointer(
                id: try r.readUInt64("id"), index: try r.readUInt64("index"), term: try r.readUInt64("term"))
        }
    }

    // MARK: snapshot manifest and chunks

    static func encode(_ m: SnapshotManifest) -> [UInt8] {
        record { w in
            w.write(m.id)
            w.write(m.metadata.index)
            w.write(m.metadata.term)
            write(m.metadata.confState, to: &w)
            w.write(m.totalSize)
            w.write(m.chunkSize)
            w.write(m.chunkCount)
            w.write(m.checksum)
        }
    }

    static func decodeManifest(_ bytes: UnsafeRawBufferPointer) throws(CodecError) -> SnapshotManifest {
        try decode(bytes, "snapshot manifest") { r throws(CodecError) in
            let id = try r.readUInt64("id")
            let index = try r.readUInt64("index")
            let term = try r.readUInt64("term")
            let conf = try readConfState(&r)
            let total = try r.readUInt64("total size")
            let chunkSize = try r.readUInt32("chunk size")
            let chunkCount = try r.readUInt32("chunk count")
            let crc = try r.readUInt32("checksum")
            // The chunk count must be exactly what the sizes imply, so readers can trust either.
            let expected = chunkSize == 0 ? 0 : (total + UInt64(chunkSize) - 1) / UInt64(chunkSize)
            guard chunkSize > 0, UInt64(chunkCount) == expected else {
                throw CodecError(
                    .invalidValue,
                    "snapshot manifest: \(chunkCount) chunks of \(chunkSize) bytes cannot hold \(total) bytes")
            }
            return SnapshotManifest(
                id: id, metadata: SnapshotMetadata(index: index, term: term, confState: conf), totalSize: total,
                chunkSize: chunkSize, chunkCount: chunkCount, checksum: crc)
        }
    }

    static let chunkHeaderSize = 1 + 8 + 4

    /// Encodes a chunk: version | u64 snapshot id | u32 chunk number | payload | crc.
    static func encodeChunk(snapshot id: UInt64, number: UInt32, payload: UnsafeRawBufferPointer) -> [UInt8] {
        var w = ByteWriter(capacity: chunkHeaderSize + payload.count + 4)
        w.write(version)
        w.write(id)
        w.write(number)
        w.writeRaw(payload)
        w.appendChecksum()
        return w.bytes
    }

    /// Checks a stored chunk and returns its payload (a slice of `bytes`, not a copy).
    static func decodeChunk(_ bytes: UnsafeRawBufferPointer, snapshot id: UInt64, number: UInt32) throws(CodecError)
        -> UnsafeRawBufferPointer
    {
        let body = try CRC32C.verifyTrailer(bytes, "snapshot \(id) chunk \(number)")
        var r = ByteReader(body)
        let v = try r.readUInt8("chunk version")
        guard v == version else {
            throw CodecError(.unknownVersion, "snapshot chunk format version \(v), this build reads \(version)")
        }
        let storedID = try r.readUInt64("chunk snapshot id")
        let storedNumber = try r.readUInt32("chunk number")
        guard storedID == id, storedNumber == number else {
            throw CodecError(
                .invalidValue,
                "chunk stored as snapshot \(id) chunk \(number) says it is snapshot \(storedID) chunk \(storedNumber)")
        }
        return UnsafeRawBufferPointer(rebasing: body[chunkHeaderSize...])
    }

    // MARK: helpers

    private static func record(_ fill: (inout ByteWriter) -> Void) -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        w.write(version)
        fill(&w)
        w.appendChecksum()
        return w.bytes
    }

    private static func decode<T>(
        _ bytes: UnsafeRawBufferPointer, _ what: String, versioned: Bool = true,
        _ body: (inout ByteReader) throws(CodecError) -> T
    ) throws(CodecError) -> T {
        let payload = try CRC32C.verifyTrailer(bytes, what)
        var r = ByteReader(payload)
        if versioned {
            let v = try r.readUInt8("\(what) version")
            guard v == version else {
                throw CodecError(.unknownVersion, "\(what) format version \(v), this build reads \(version)")
            }
        }
        let value = try body(&r)
        try r.expectEnd(what)
        return value
    }
}
