import GallocyCodec
import Testing

@Suite struct CommandCodecTests {
    @Test func everyCommandBodyRoundTripsWithRandomFields() throws {
        var rng = SplitMix64(seed: 0xC044)
        for _ in 0..<40 {
            for command in rng.commands() {
                let bytes = command.encode()
                #expect(try CommandCodec.decode(bytes) == command)
                #expect(try Command(decoding: bytes) == command)
                try command.validate()
            }
        }
    }

    @Test func everyBodyHasItsOwnTagAndKindName() {
        var rng = SplitMix64(seed: 1)
        let commands = rng.commands()
        let names = Set(commands.map(\.kindName))
        #expect(
            names == [
                "bootstrap", "noop", "alloc", "free", "write", "atomic", "lock_acquire", "lock_release", "lock_expire",
                "barrier", "set_root",
            ])
        // Distinct bodies of distinct kinds start with distinct tags.
        var tagByKind: [String: UInt8] = [:]
        for command in commands {
            let tag = command.encode()[1]
            if let known = tagByKind[command.kindName] { #expect(known == tag) }
            tagByKind[command.kindName] = tag
        }
        #expect(Set(tagByKind.values).count == tagByKind.count)
    }

    @Test func tagsArePinned() {
        // The tags are part of the log format (docs/formats.md); a change here is a format change.
        let expected: [String: UInt8] = [
            "bootstrap": 1, "noop": 2, "alloc": 3, "free": 4, "write": 5, "atomic": 6, "lock_acquire": 7,
            "lock_release": 8, "lock_expire": 9, "barrier": 10, "set_root": 11,
        ]
        var rng = SplitMix64(seed: 2)
        for command in rng.commands() { #expect(command.encode()[1] == expected[command.kindName]) }
    }

    @Test func noopEncodingIsPinned() {
        let bytes = Command(company: 0, client: ClientTag(session: 5, sequence: 300), body: .noop).encode()
        #expect(Array(bytes.prefix(6)) == [1, 2, 0, 5, 0xAC, 0x02])
        #expect(bytes.count == 10)
    }

    @Test func nameLongerThan256BytesFailsValidationAndDecoding() {
        let command = Command(body: .setRoot(name: String(repeating: "é", count: 129), address: 8))
        #expect { try command.validate() } throws: { ($0 as? CodecError)?.code == .lengthOutOfRange }
        #expect { try CommandCodec.decode(command.encode()) } throws: { ($0 as? CodecError)?.code == .lengthOutOfRange }
        let longest = Command(body: .setRoot(name: String(repeating: "é", count: 128), address: 8))
        #expect(throws: Never.self) { try longest.validate() }
        #expect((try? CommandCodec.decode(longest.encode())) == longest)
    }

    @Test func invalidUTF8NameIsRefused() {
        var writer = ByteWriter()
        writer.writeRaw([CommandCodec.version, 11, 0, 0, 0])
        writer.writeBytes([0xC3, 0x28])
        writer.writeVarint(0)
        #expect { try CommandCodec.decode(sealed(writer.bytes)) } throws: { ($0 as? CodecError)?.code == .invalidValue }
    }

    @Test func unknownTagAndUnknownAtomicOpAreRefused() {
        #expect { try CommandCodec.decode(sealed([CommandCodec.version, 0, 0, 0, 0])) } throws: {
            ($0 as? CodecError)?.code == .unknownTag
        }
        #expect { try CommandCodec.decode(sealed([CommandCodec.version, 12, 0, 0, 0])) } throws: {
            ($0 as? CodecError)?.code == .unknownTag
        }
        #expect { try CommandCodec.decode(sealed([CommandCodec.version, 6, 0, 0, 0, 8, 4, 1])) } throws: {
            ($0 as? CodecError)?.code == .unknownTag
        }
    }

    @Test func otherVersionIsRefusedAsUnknownVersion() {
        var bytes = Command(body: .noop).encode()
        bytes[0] = 0
        #expect { try CommandCodec.decode(bytes) } throws: { ($0 as? CodecError)?.code == .unknownVersion }
    }

    @Test func valuesTooWideForTheirFieldsAreRefused() {
        // company 2^32
        var writer = ByteWriter()
        writer.writeRaw([CommandCodec.version, 2])
        writer.writeVarint(1 << 32)
        writer.writeRaw([0, 0])
        #expect { try CommandCodec.decode(sealed(writer.bytes)) } throws: { ($0 as? CodecError)?.code == .invalidValue }
        // page size 2^32
        writer = ByteWriter()
        writer.writeRaw([CommandCodec.version, 1, 0, 0, 0, 1, 2, 3])
        writer.writeVarint(1 << 32)
        #expect { try CommandCodec.decode(sealed(writer.bytes)) } throws: { ($0 as? CodecError)?.code == .invalidValue }
    }

    @Test func writeWithInconsistentDiffLengthsIsRefused() {
        let command = Command(
            body: .write(
                member: 1, pages: [PageWrite(page: 0, diff: PageDiff(compressed: [], rawLength: 5))], releaseLock: nil,
                releaseEpoch: 0))
        #expect { try command.validate() } throws: { ($0 as? CodecError)?.code == .invalidValue }
        #expect { try CommandCodec.decode(command.encode()) } throws: { ($0 as? CodecError)?.code == .invalidValue }
    }
}
