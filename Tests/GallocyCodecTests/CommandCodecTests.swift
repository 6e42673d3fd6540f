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
                "barrier", "set_root", "lease_request", "lease_release", "lease_expire",
            ])
        // Distinct kinds start with distinct tags; one kind may have several (both barrier arrivals
        // are `barrier`).
        var kindByTag: [UInt8: String] = [:]
        for command in commands {
            let tag = command.encode()[1]
            if let known = kindByTag[tag] { #expect(known == command.kindName) }
            kindByTag[tag] = command.kindName
        }
        #expect(Set(kindByTag.keys) == Set(1...16))
    }

    @Test func tagsArePinned() {
        // The tags are part of the log format (docs/formats.md); a change here is a format change.
        func expected(_ body: CommandBody) -> UInt8 {
            switch body {
            case .bootstrap: 1
            case .noop: 2
            case .alloc: 3
            case .free: 4
            case .write: 5
            case .atomic: 6
            case .lockAcquire: 7
            case .lockRelease: 8
            case .lockExpire: 9
            case .barrierArrive: 10
            case .setRoot: 11
            case .barrierArriveAt: 12
            case .allocIn: 13
            case .leaseRequest: 14
            case .leaseRelease: 15
            case .leaseExpire: 16
            }
        }
        var rng = SplitMix64(seed: 2)
        for command in rng.commands() { #expect(command.encode()[1] == expected(command.body)) }
    }

    @Test func barrierArrivalEncodingsArePinned() throws {
        // Tag 10 as logs before tag 12 existed hold it; tag 12 adds the generation.
        let old = Command(body: .barrierArrive(name: "b", participants: 3, member: 300))
        #expect(Array(old.encode().dropLast(4)) == [1, 10, 0, 0, 0, 1, 0x62, 3, 0xAC, 0x02])
        let at = Command(body: .barrierArriveAt(name: "b", participants: 3, member: 300, generation: 7))
        let bytes = at.encode()
        #expect(Array(bytes.dropLast(4)) == [1, 12, 0, 0, 0, 1, 0x62, 3, 0xAC, 0x02, 7])
        #expect(try CommandCodec.decode(bytes) == at)
        #expect(at.kindName == "barrier")
    }

    @Test func barrierArriveAtIsCheckedLikeBarrierArrive() {
        // A name over the limit fails validation and decoding.
        let long = Command(
            body: .barrierArriveAt(name: String(repeating: "x", count: 257), participants: 2, member: 1, generation: 0))
        #expect { try long.validate() } throws: { ($0 as? CodecError)?.code == .lengthOutOfRange }
        #expect { try CommandCodec.decode(long.encode()) } throws: { ($0 as? CodecError)?.code == .lengthOutOfRange }
        // Participants beyond 32 bits.
        var writer = ByteWriter()
        writer.writeRaw([CommandCodec.version, 12, 0, 0, 0])
        writer.writeString("b")
        writer.writeVarint(1 << 32)
        writer.writeVarint(1)
        writer.writeVarint(0)
        #expect { try CommandCodec.decode(sealed(writer.bytes)) } throws: { ($0 as? CodecError)?.code == .invalidValue }
        // Without its generation (a tag 10 body behind tag 12), and with a byte too many.
        writer = ByteWriter()
        writer.writeRaw([CommandCodec.version, 12, 0, 0, 0])
        writer.writeString("b")
        writer.writeVarint(3)
        writer.writeVarint(1)
        #expect { try CommandCodec.decode(sealed(writer.bytes)) } throws: { ($0 as? CodecError)?.code == .truncated }
        writer.writeVarint(0)
        #expect((try? CommandCodec.decode(sealed(writer.bytes)))?.body
            == .barrierArriveAt(name: "b", participants: 3, member: 1, generation: 0))
        writer.writeVarint(0)
        #expect(throws: CodecError.self) { try CommandCodec.decode(sealed(writer.bytes)) }
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
        #expect { try CommandCodec.decode(sealed([CommandCodec.version, 17, 0, 0, 0])) } throws: {
            ($0 as? CodecError)?.code == .unknownTag
        }
        // An allocation mode this build does not know.
        #expect { try CommandCodec.decode(sealed([CommandCodec.version, 13, 0, 0, 0, 8, 1, 2])) } throws: {
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
