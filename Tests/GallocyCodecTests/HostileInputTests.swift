import GallocyCodec
import GallocyRaft
import Testing

/// Every decoder gets random bytes, truncations and flipped bytes: it must never crash and must
/// always answer with a `CodecError`.
@Suite struct HostileInputTests {
    static func isCodecError(_ body: () throws -> Void) -> Bool {
        do {
            try body()
            return false
        } catch {
            return error is CodecError
        }
    }

    @Test func randomBuffersAreRefusedByEveryDecoder() {
        var rng = SplitMix64(seed: 0x4057)
        for round in 0..<4000 {
            var bytes = rng.bytes(rng.int(0..<160))
            // Most buffers get a valid version byte and a valid checksum, so that decoding reaches
            // the structure behind them.
            if round % 4 != 0, !bytes.isEmpty {
                bytes[0] = 1
                bytes = sealed(bytes)
            }
            #expect(Self.isCodecError { _ = try EntryCodec.decode(bytes) } || (try? EntryCodec.decode(bytes)) != nil)
            let message = Result { try MessageCodec.decode(bytes) }
            if case .failure(let error) = message { #expect(error is CodecError) }
            let command = Result { try CommandCodec.decode(bytes) }
            if case .failure(let error) = command { #expect(error is CodecError) }
        }
    }

    @Test func randomBodiesBehindValidHeadersNeverCrash() {
        // Valid version and tag, random fields: decoding may succeed by chance, or must throw.
        var rng = SplitMix64(seed: 0x4058)
        for _ in 0..<4000 {
            let messageBytes = sealed(
                [MessageCodec.version, UInt8(rng.int(1..<16)), UInt8(rng.int(0..<4))] + rng.bytes(rng.int(0..<100)))
            if case .failure(let error) = Result(catching: { try MessageCodec.decode(messageBytes) }) {
                #expect(error is CodecError)
            }
            let commandBytes = sealed([CommandCodec.version, UInt8(rng.int(1..<13))] + rng.bytes(rng.int(0..<100)))
            if case .failure(let error) = Result(catching: { try CommandCodec.decode(commandBytes) }) {
                #expect(error is CodecError)
            }
            let entryBytes = sealed([EntryCodec.version, UInt8(rng.int(0..<2))] + rng.bytes(rng.int(0..<40)))
            if case .failure(let error) = Result(catching: { try EntryCodec.decode(entryBytes) }) {
                #expect(error is CodecError)
            }
        }
    }

    @Test func everyTruncationAndByteFlipOfAnEntryIsRefused() {
        var rng = SplitMix64(seed: 11)
        for _ in 0..<20 {
            forEachCorruption(of: EntryCodec.encode(rng.entry())) { bytes in
                #expect(Self.isCodecError { _ = try EntryCodec.decode(bytes) })
            }
        }
    }

    @Test func everyTruncationAndByteFlipOfAMessageIsRefused() {
        var rng = SplitMix64(seed: 12)
        for type in MessageType.allCases {
            forEachCorruption(of: rng.message(type).encode()) { bytes in
                #expect(Self.isCodecError { _ = try MessageCodec.decode(bytes) })
            }
        }
    }

    @Test func everyTruncationAndByteFlipOfACommandIsRefused() {
        var rng = SplitMix64(seed: 13)
        for command in rng.commands() {
            forEachCorruption(of: command.encode()) { bytes in
                #expect(Self.isCodecError { _ = try CommandCodec.decode(bytes) })
            }
        }
    }

    @Test func everyTruncationAndByteFlipOfABarrierArrivalWithAGenerationFailsCleanly() throws {
        let command = Command(
            company: 3, client: ClientTag(session: 9, sequence: 400),
            body: .barrierArriveAt(name: "phase/名前", participants: 70_000, member: 1 << 40, generation: 1 << 33))
        let bytes = command.encode()
        #expect(try CommandCodec.decode(bytes) == command)
        forEachCorruption(of: bytes) { corrupt in
            #expect(Self.isCodecError { _ = try CommandCodec.decode(corrupt) })
        }
        // Behind a valid checksum (re-sealed): every truncation of the body and every flip either
        // decodes to some command or throws a CodecError, never anything else.
        let body = Array(bytes.dropLast(4))
        forEachCorruption(of: body) { corrupt in
            if case .failure(let error) = Result(catching: { try CommandCodec.decode(sealed(corrupt)) }) {
                #expect(error is CodecError)
            }
        }
        for length in 0..<body.count {
            #expect(Self.isCodecError { _ = try CommandCodec.decode(sealed(Array(body.prefix(length)))) })
        }
    }

    @Test func everyTruncationAndByteFlipOfADiffNeverCrashes() {
        var rng = SplitMix64(seed: 14)
        for edits in [1, 5, 40, 400] {
            let (twin, page) = rng.editedPage(size: 4096, edits: edits)
            let diff = PageDiff.make(twin, page)
            forEachCorruption(of: diff.compressed) { compressed in
                // LZ4 has no checksum of its own (the command's covers it), so a flipped literal
                // may still decode: then it must still stay inside the page.
                var copy = twin
                for rawLength in [diff.rawLength, diff.rawLength &+ 1] {
                    let result = Result { try PageDiff(compressed: compressed, rawLength: rawLength).apply(to: &copy) }
                    if case .failure(let error) = result { #expect(error is CodecError) }
                }
            }
        }
    }

    @Test func lengthClaimingTwoToTheSixtyBytesFailsFast() {
        let huge: UInt64 = 1 << 60
        // Entry data length.
        var writer = ByteWriter()
        writer.writeRaw([EntryCodec.version, 0])
        writer.write(UInt64(1))
        writer.write(UInt64(1))
        writer.writeVarint(huge)
        #expect(Self.code { try EntryCodec.decode(sealed(writer.bytes)) } == .lengthOutOfRange)

        // Message context length, entry count and member count.
        func messageHeader() -> ByteWriter {
            var writer = ByteWriter()
            writer.writeRaw([MessageCodec.version, MessageType.snapshot.rawValue, 2])
            for _ in 0..<8 { writer.writeVarint(0) }
            return writer
        }
        writer = messageHeader()
        writer.writeVarint(huge)
        #expect(Self.code { try MessageCodec.decode(sealed(writer.bytes)) } == .lengthOutOfRange)
        writer = messageHeader()
        writer.writeVarint(0)
        writer.writeVarint(huge)
        #expect(Self.code { try MessageCodec.decode(sealed(writer.bytes)) } == .lengthOutOfRange)
        writer = messageHeader()
        writer.writeRaw([0, 0, 0, 0])
        writer.writeVarint(huge)
        #expect(Self.code { try MessageCodec.decode(sealed(writer.bytes)) } == .lengthOutOfRange)
        // Snapshot chunk data length.
        writer = messageHeader()
        writer.writeRaw([0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        writer.writeVarint(huge)
        #expect(Self.code { try MessageCodec.decode(sealed(writer.bytes)) } == .lengthOutOfRange)

        // Command: page count, compressed diff length, name length; counts near Int.max too.
        for count in [huge, UInt64(Int.max), UInt64.max] {
            writer = ByteWriter()
            writer.writeRaw([CommandCodec.version, 5, 0, 0, 0, 1])
            writer.writeVarint(count)
            #expect(Self.code { try CommandCodec.decode(sealed(writer.bytes)) } == .lengthOutOfRange)
        }
        writer = ByteWriter()
        writer.writeRaw([CommandCodec.version, 5, 0, 0, 0, 1, 1, 0, 10])
        writer.writeVarint(huge)
        #expect(Self.code { try CommandCodec.decode(sealed(writer.bytes)) } == .lengthOutOfRange)
        writer = ByteWriter()
        writer.writeRaw([CommandCodec.version, 11, 0, 0, 0])
        writer.writeVarint(huge)
        #expect(Self.code { try CommandCodec.decode(sealed(writer.bytes)) } == .lengthOutOfRange)
    }

    static func code(_ body: () throws -> Any) -> CodecError.Code? {
        do {
            _ = try body()
            return nil
        } catch {
            return (error as? CodecError)?.code
        }
    }
}
