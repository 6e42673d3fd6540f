import GallocyRaft

/// The stored form of one Raft log entry (the value of the `log` database, and the entries inside
/// peer messages):
///
///     u8 version (1) | u8 kind | u64 term | u64 index | varint length | data | u32 crc32c
///
/// Integers are little-endian; the checksum covers every byte before it. `term` sits at a fixed
/// offset so that `term(of:)` reads it without decoding the data.
public enum EntryCodec {
    /// The format version this build writes and reads (byte 0 of every entry).
    public static let version: UInt8 = 1
    /// The largest data an entry may carry (64 MiB); larger lengths are refused before allocating.
    public static let maxDataSize = 64 << 20
    /// Bytes an entry takes beyond its data and the data's length prefix.
    public static let fixedOverhead = 1 + 1 + 8 + 8 + 4

    /// The stored form of `entry`, checksum included.
    public static func encode(_ entry: Entry) -> [UInt8] {
        var writer = ByteWriter(capacity: entry.data.count + fixedOverhead + 5)
        encode(entry, into: &writer)
        return writer.bytes
    }

    /// Appends the stored form of `entry`, with its own checksum, to `writer` (as messages do).
    public static func encode(_ entry: Entry, into writer: inout ByteWriter) {
        let start = writer.bytes.count
        writer.write(version)
        writer.write(entry.kind.rawValue)
        writer.write(entry.term)
        writer.write(entry.index)
        writer.writeBytes(entry.data)
        let crc = writer.bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[start...])) }
        writer.write(crc)
    }

    /// Decodes one entry that fills `bytes` exactly, verifying its checksum.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(CodecError) -> Entry {
        let body = try CRC32C.verifyTrailer(bytes, "entry")
        var reader = ByteReader(body)
        let entry = try decodeBody(&reader)
        try reader.expectEnd("entry")
        return entry
    }

    /// Decodes one entry that fills `bytes` exactly, verifying its checksum.
    public static func decode(_ bytes: [UInt8]) throws(CodecError) -> Entry {
        try bytes.withUnsafeBytes { raw in Result { () throws(CodecError) in try decode(raw) } }.get()
    }

    /// Decodes one entry from the front of `reader` (inside a larger structure such as a
    /// message), verifying its own checksum.
    public static func decode(from reader: inout ByteReader, in buffer: UnsafeRawBufferPointer) throws(CodecError)
        -> Entry
    {
        let start = reader.offset
        let entry = try decodeBody(&reader)
        let end = reader.offset
        let stored = try reader.readUInt32("entry checksum")
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buffer[start..<end]))
        guard stored == computed else {
            throw CodecError(.checksumMismatch, "entry \(entry.index): stored checksum does not match its bytes")
        }
        return entry
    }

    private static func decodeBody(_ reader: inout ByteReader) throws(CodecError) -> Entry {
        let v = try reader.readUInt8("entry version")
        guard v == version else {
            throw CodecError(.unknownVersion, "entry format version \(v), this build reads \(version)")
        }
        let rawKind = try reader.readUInt8("entry kind")
        guard let kind = Entry.Kind(rawValue: rawKind) else { throw CodecError(.unknownTag, "entry kind \(rawKind)") }
        let term = try reader.readUInt64("entry term")
        let index = try reader.readUInt64("entry index")
        let data = try reader.readBytes("entry data", limit: maxDataSize)
        return Entry(term: term, index: index, kind: kind, data: data)
    }

    /// The term of a stored entry, read from its fixed offset without checking the checksum.
    public static func term(of bytes: UnsafeRawBufferPointer) throws(CodecError) -> UInt64 {
        guard bytes.count >= fixedOverhead + 1 else { throw CodecError(.truncated, "entry is \(bytes.count) bytes") }
        guard bytes[0] == version else { throw CodecError(.unknownVersion, "entry format version \(bytes[0])") }
        var reader = ByteReader(UnsafeRawBufferPointer(rebasing: bytes[2..<10]))
        return try reader.readUInt64("entry term")
    }
}
