import GallocyRaft

/// The wire form of a Raft `Message` between two members of a group:
///
///     u8 version (1) | u8 type | u8 flags (bit 0: reject, bit 1: snapshot follows)
///     varint from | varint to | varint term | varint logTerm | varint index | varint commit
///     varint rejectHint | varint hintTerm | varint context length | context
///     varint entry count | entries, each an `EntryCodec` record with its own checksum
///     [snapshot chunk: metadata (see `encode(_:into:)` for `SnapshotMetadata`)
///      | varint offset | varint totalSize | u8 done | varint data length | data]
///     u32 crc32c of every byte before it
///
/// Byte 0 is the version in every format version, so a peer running a format this build does not
/// know is refused with `.unknownVersion` rather than misread. Decoding checks every count against
/// the limits below and against the bytes that remain before allocating, and never traps.
/// The layout is described byte by byte in docs/formats.md.
public enum MessageCodec {
    /// The format version this build writes and reads (byte 0 of every message).
    public static let version: UInt8 = 1
    /// The largest encoded message (65 MiB): room for one entry of `EntryCodec.maxDataSize`
    /// plus the message's own fields. Senders keep batches and snapshot chunks well below it.
    public static let maxMessageSize = EntryCodec.maxDataSize + (1 << 20)
    /// The most entries one message may carry.
    public static let maxEntriesPerMessage = 1 << 16
    /// The most members in any one list of a `ConfState`.
    public static let maxMembers = 1024
    /// The largest `context` (64 KiB).
    public static let maxContextSize = 64 << 10

    private static let rejectFlag: UInt8 = 1
    private static let snapshotFlag: UInt8 = 2
    /// The smallest encoded entry: fixed fields, a 1-byte length and no data.
    private static let minimumEntrySize = EntryCodec.fixedOverhead + 1

    /// Encodes `message`, checksum included.
    public static func encode(_ message: Message) -> [UInt8] {
        var capacity = 64 + message.context.count + (message.snapshot?.data.count ?? 0)
        for entry in message.entries { capacity += entry.data.count + EntryCodec.fixedOverhead + 5 }
        var writer = ByteWriter(capacity: capacity)
        writer.write(version)
        writer.write(message.type.rawValue)
        writer.write((message.reject ? rejectFlag : 0) | (message.snapshot != nil ? snapshotFlag : 0))
        writer.writeVarint(message.from)
        writer.writeVarint(message.to)
        writer.writeVarint(message.term)
        writer.writeVarint(message.logTerm)
        writer.writeVarint(message.index)
        writer.writeVarint(message.commit)
        writer.writeVarint(message.rejectHint)
        writer.writeVarint(message.hintTerm)
        writer.writeBytes(message.context)
        writer.writeVarint(UInt64(message.entries.count))
        for entry in message.entries { EntryCodec.encode(entry, into: &writer) }
        if let chunk = message.snapshot {
            encode(chunk.metadata, into: &writer)
            writer.writeVarint(chunk.offset)
            writer.writeVarint(chunk.totalSize)
            writer.write(chunk.done)
            writer.writeBytes(chunk.data)
        }
        writer.appendChecksum()
        return writer.bytes
    }

    /// Decodes one message that fills `bytes` exactly, verifying its version and checksum.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(CodecError) -> Message {
        guard bytes.count <= maxMessageSize else {
            throw CodecError(
                .lengthOutOfRange, "message of \(bytes.count) bytes exceeds the \(maxMessageSize)-byte limit")
        }
        // The version first: a newer peer's message must say so, not fail as a bad checksum.
        guard let first = bytes.first else { throw CodecError(.truncated, "message is empty") }
        guard first == version else {
            throw CodecError(.unknownVersion, "message format version \(first), this build reads \(version)")
        }
        let body = try CRC32C.verifyTrailer(bytes, "message")
        var reader = ByteReader(body)
        _ = try reader.readUInt8("message version")
        let rawType = try reader.readUInt8("message type")
        guard let type = MessageType(rawValue: rawType) else {
            throw CodecError(.unknownTag, "message type \(rawType)")
        }
        let flags = try reader.readUInt8("message flags")
        guard flags & ~(rejectFlag | snapshotFlag) == 0 else {
            throw CodecError(
                .invalidValue, "message flags 0x\(String(flags, radix: 16)) set bits this build does not know")
        }
        var message = Message(type: type)
        message.reject = flags & rejectFlag != 0
        message.from = try reader.readVarint("message from")
        message.to = try reader.readVarint("message to")
        message.term = try reader.readVarint("message term")
        message.logTerm = try reader.readVarint("message logTerm")
        message.index = try reader.readVarint("message index")
        message.commit = try reader.readVarint("message commit")
        message.rejectHint = try reader.readVarint("message rejectHint")
        message.hintTerm = try reader.readVarint("message hintTerm")
        message.context = try reader.readBytes("message context", limit: maxContextSize)
        let entryCount = try reader.readCount(
            "message entry count", limit: maxEntriesPerMessage, minimumElementSize: minimumEntrySize)
        if entryCount > 0 {
            message.entries.reserveCapacity(entryCount)
            for _ in 0..<entryCount {
                message.entries.append(try EntryCodec.decode(from: &reader, in: body))
            }
        }
        if flags & snapshotFlag != 0 {
            let metadata = try decodeMetadata(from: &reader)
            let offset = try reader.readVarint("snapshot chunk offset")
            let totalSize = try reader.readVarint("snapshot chunk total size")
            let done = try reader.readBool("snapshot chunk done")
            let data = try reader.readBytes("snapshot chunk data", limit: maxMessageSize)
            message.snapshot = SnapshotChunk(
                metadata: metadata, offset: offset, totalSize: totalSize, data: data, done: done)
        }
        try reader.expectEnd("message")
        return message
    }

    /// Decodes one message that fills `bytes` exactly (see `decode(_:)` on a buffer).
    public static func decode(_ bytes: [UInt8]) throws(CodecError) -> Message {
        try bytes.withUnsafeBytes { raw in Result { () throws(CodecError) in try decode(raw) } }.get()
    }

    /// Appends a snapshot's metadata, the way messages carry it (storage may reuse it for its
    /// manifest): `varint index | varint term | voters | learners | votersOutgoing`, each list a
    /// varint count and that many varint ids. No checksum: the enclosing record has one.
    public static func encode(_ metadata: SnapshotMetadata, into writer: inout ByteWriter) {
        writer.writeVarint(metadata.index)
        writer.writeVarint(metadata.term)
        for list in [metadata.confState.voters, metadata.confState.learners, metadata.confState.votersOutgoing] {
            writer.writeVarint(UInt64(list.count))
            for id in list { writer.writeVarint(id) }
        }
    }

    /// Reads what `encode(_:into:)` wrote for a `SnapshotMetadata`; each member list holds at
    /// most `maxMembers` ids.
    public static func decodeMetadata(from reader: inout ByteReader) throws(CodecError) -> SnapshotMetadata {
        let index = try reader.readVarint("snapshot index")
        let term = try reader.readVarint("snapshot term")
        let voters = try readMembers(&reader, "voters")
        let learners = try readMembers(&reader, "learners")
        let votersOutgoing = try readMembers(&reader, "outgoing voters")
        return SnapshotMetadata(
            index: index, term: term,
            confState: ConfState(voters: voters, learners: learners, votersOutgoing: votersOutgoing))
    }

    private static func readMembers(_ reader: inout ByteReader, _ what: String) throws(CodecError) -> [NodeID] {
        let count = try reader.readCount("count of \(what)", limit: maxMembers)
        var ids: [NodeID] = []
        ids.reserveCapacity(count)
        for i in 0..<count { ids.append(try reader.readVarint("\(what)[\(i)]")) }
        return ids
    }
}

extension Message {
    /// The wire form of the message (see `MessageCodec`).
    public func encode() -> [UInt8] { MessageCodec.encode(self) }

    /// Decodes a message from its wire form (see `MessageCodec.decode(_:)`).
    public init(decoding bytes: [UInt8]) throws(CodecError) { self = try MessageCodec.decode(bytes) }

    /// Decodes a message from its wire form (see `MessageCodec.decode(_:)`).
    public init(decoding bytes: UnsafeRawBufferPointer) throws(CodecError) { self = try MessageCodec.decode(bytes) }
}
