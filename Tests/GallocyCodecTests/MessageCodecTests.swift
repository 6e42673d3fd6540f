import GallocyCodec
import GallocyRaft
import Testing

@Suite struct MessageCodecTests {
    @Test(arguments: MessageType.allCases)
    func everyMessageTypeRoundTripsWithRandomFields(type: MessageType) throws {
        var rng = SplitMix64(seed: 0xC0DEC + UInt64(type.rawValue))
        for _ in 0..<50 {
            let message = rng.message(type)
            let bytes = message.encode()
            #expect(try MessageCodec.decode(bytes) == message)
            #expect(try Message(decoding: bytes) == message)
        }
    }

    @Test func emptyMessageRoundTripsInFewBytes() throws {
        let message = Message(type: .heartbeat, from: 1, to: 2, term: 3)
        let bytes = message.encode()
        #expect(try MessageCodec.decode(bytes) == message)
        // version, type, flags, 8 varints, context length, entry count, checksum.
        #expect(bytes.count == 3 + 8 + 1 + 1 + 4)
    }

    @Test func extremeValuesRoundTrip() throws {
        let chunk = SnapshotChunk(
            metadata: SnapshotMetadata(
                index: .max, term: .max, confState: ConfState(voters: [.max, 0], learners: [1], votersOutgoing: [])),
            offset: .max, totalSize: .max, data: [], done: true)
        let message = Message(
            type: .snapshot, from: .max, to: .max, term: .max, logTerm: .max, index: .max,
            entries: [Entry(term: .max, index: .max, kind: .confChange, data: [])], commit: .max, reject: true,
            rejectHint: .max, hintTerm: .max, context: [0xFF], snapshot: chunk)
        #expect(try MessageCodec.decode(message.encode()) == message)
    }

    @Test func otherVersionIsRefusedAsUnknownVersion() {
        var bytes = Message(type: .vote, term: 4).encode()
        bytes[0] = 2
        #expect { try MessageCodec.decode(bytes) } throws: { ($0 as? CodecError)?.code == .unknownVersion }
    }

    @Test func unknownMessageTypeIsRefusedAsUnknownTag() {
        var bytes = Message(type: .vote, term: 4).encode()
        bytes.removeLast(4)
        bytes[1] = 200
        #expect { try MessageCodec.decode(sealed(bytes)) } throws: { ($0 as? CodecError)?.code == .unknownTag }
    }

    @Test func unknownFlagBitsAreRefused() {
        var bytes = Message(type: .vote, term: 4).encode()
        bytes.removeLast(4)
        bytes[2] = 0x04
        #expect { try MessageCodec.decode(sealed(bytes)) } throws: { ($0 as? CodecError)?.code == .invalidValue }
    }

    @Test func trailingBytesAreRefused() {
        var bytes = Message(type: .vote, term: 4).encode()
        bytes.removeLast(4)
        bytes.append(0)
        #expect { try MessageCodec.decode(sealed(bytes)) } throws: { ($0 as? CodecError)?.code == .trailingBytes }
    }

    @Test func messageLargerThanTheLimitIsRefusedBeforeDecoding() {
        let bytes = [UInt8](repeating: MessageCodec.version, count: MessageCodec.maxMessageSize + 1)
        #expect { try MessageCodec.decode(bytes) } throws: { ($0 as? CodecError)?.code == .lengthOutOfRange }
    }

    @Test func memberListLongerThanTheLimitIsRefused() {
        let chunk = SnapshotChunk(
            metadata: SnapshotMetadata(confState: ConfState(voters: Array(1...UInt64(MessageCodec.maxMembers + 1)))),
            offset: 0, totalSize: 0, data: [], done: true)
        let bytes = Message(type: .snapshot, snapshot: chunk).encode()
        #expect { try MessageCodec.decode(bytes) } throws: { ($0 as? CodecError)?.code == .lengthOutOfRange }
    }

    @Test func moreEntriesThanTheLimitAreRefused() throws {
        let entries = (0...UInt64(MessageCodec.maxEntriesPerMessage)).map { Entry(term: 1, index: $0) }
        #expect { try MessageCodec.decode(Message(type: .append, entries: entries).encode()) } throws: {
            ($0 as? CodecError)?.code == .lengthOutOfRange
        }
        let allowed = Message(type: .append, entries: Array(entries.dropLast()))
        #expect(try MessageCodec.decode(allowed.encode()) == allowed)
    }

    @Test func snapshotMetadataRoundTripsOnItsOwn() throws {
        var rng = SplitMix64(seed: 77)
        for _ in 0..<100 {
            let metadata = rng.chunk().metadata
            var writer = ByteWriter()
            MessageCodec.encode(metadata, into: &writer)
            let decoded = try writer.bytes.withUnsafeBytes { raw in
                Result { () throws(CodecError) in
                    var reader = ByteReader(raw)
                    let value = try MessageCodec.decodeMetadata(from: &reader)
                    try reader.expectEnd("metadata")
                    return value
                }
            }.get()
            #expect(decoded == metadata)
        }
    }
}
