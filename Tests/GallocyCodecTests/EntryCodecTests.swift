import GallocyCodec
import GallocyRaft
import Testing

@Suite struct EntryCodecTests {
    @Test func roundTripsEveryKind() throws {
        for kind in Entry.Kind.allCases {
            let entry = Entry(term: 7, index: 1 << 40, kind: kind, data: Array("hello".utf8))
            let bytes = EntryCodec.encode(entry)
            #expect(try EntryCodec.decode(bytes) == entry)
            #expect(try bytes.withUnsafeBytes { try EntryCodec.term(of: $0) } == 7)
        }
    }

    @Test func knownCRC32CVector() {
        // RFC 3720 test vector: CRC-32C of "123456789".
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    @Test func flippedByteIsDetected() {
        let bytes = EntryCodec.encode(Entry(term: 3, index: 9, data: [1, 2, 3, 4]))
        for i in bytes.indices {
            var corrupt = bytes
            corrupt[i] ^= 0x40
            #expect(throws: CodecError.self) { try EntryCodec.decode(corrupt) }
        }
    }
}

@Suite struct CRC32CTests {
    @Test func hardwareAndTableAgreeOnEveryLengthAndSplit() {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<300).map { _ in UInt8.random(in: 0...255, using: &rng) }
        bytes.withUnsafeBytes { all in
            for length in 0...all.count {
                let piece = UnsafeRawBufferPointer(rebasing: all[0..<length])
                #expect(CRC32C.checksum(piece) == CRC32C.softwareChecksum(piece), "length \(length)")
                let split = length / 3
                let first = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: all[0..<split]))
                let continued = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: all[split..<length]), continuing: first)
                #expect(continued == CRC32C.softwareChecksum(piece), "length \(length) split at \(split)")
            }
        }
    }

    @Test func softwareTableMatchesTheRFCVector() {
        let bytes = Array("123456789".utf8)
        #expect(bytes.withUnsafeBytes { CRC32C.softwareChecksum($0) } == 0xE306_9283)
    }
}
