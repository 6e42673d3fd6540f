import GallocyCodec
import GallocyRaft

/// A small deterministic generator (SplitMix64), so that every random test reproduces from its seed.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A value of random magnitude, so that varints of every length appear.
    mutating func wide() -> UInt64 { next() >> (next() % 64) }

    mutating func int(_ range: Range<Int>) -> Int { Int.random(in: range, using: &self) }

    mutating func bool() -> Bool { next() & 1 == 1 }

    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) } }

    mutating func name() -> String {
        let parts = ["lock", "barrier", "root", "é", "ü", "名前", "x", "-", "_"]
        return (0..<int(0..<8)).map { _ in parts[int(0..<parts.count)] }.joined()
    }

    mutating func entry() -> Entry {
        Entry(
            term: wide(), index: wide(), kind: Entry.Kind.allCases[int(0..<Entry.Kind.allCases.count)],
            data: bytes(int(0..<64)))
    }

    mutating func members() -> [NodeID] { (0..<int(0..<6)).map { _ in wide() } }

    mutating func chunk() -> SnapshotChunk {
        SnapshotChunk(
            metadata: SnapshotMetadata(
                index: wide(), term: wide(),
                confState: ConfState(voters: members(), learners: members(), votersOutgoing: members())),
            offset: wide(), totalSize: wide(), data: bytes(int(0..<200)), done: bool())
    }

    mutating func message(_ type: MessageType) -> Message {
        Message(
            type: type, from: wide(), to: wide(), term: wide(), logTerm: wide(), index: wide(),
            entries: (0..<int(0..<5)).map { _ in entry() }, commit: wide(), reject: bool(),
            rejectHint: wide(), hintTerm: wide(), context: bytes(int(0..<24)),
            snapshot: type == .snapshot || bool() ? chunk() : nil)
    }

    /// A page of `size` bytes and a copy with `edits` random bytes changed.
    mutating func editedPage(size: Int, edits: Int) -> (twin: [UInt8], page: [UInt8]) {
        let twin = bytes(size)
        var page = twin
        for _ in 0..<edits where size > 0 { page[int(0..<size)] &+= UInt8(int(1..<256)) }
        return (twin, page)
    }

    mutating func pageWrite() -> PageWrite {
        let (twin, page) = editedPage(size: 4096, edits: int(0..<50))
        return PageWrite(page: wide(), diff: PageDiff.make(twin, page))
    }

    /// One command of each body case, with random fields.
    mutating func commands() -> [Command] {
        let bodies: [CommandBody] = [
            .bootstrap(
                ClusterSettings(
                    clusterID: wide(), heapBase: wide(), heapSize: wide(), pageSize: UInt32(truncatingIfNeeded: wide()))
            ),
            .noop,
            .alloc(size: wide(), member: wide()),
            .free(address: wide()),
            .write(
                member: wide(), pages: (0..<int(0..<4)).map { _ in pageWrite() }, releaseLock: bool() ? name() : nil,
                releaseEpoch: wide()),
            .atomic(address: wide(), op: .compareAndSwap(expect: wide(), value: wide())),
            .atomic(address: wide(), op: .add(wide())),
            .atomic(address: wide(), op: .swap(wide())),
            .lockAcquire(name: name(), member: wide(), ttlMillis: wide(), now: wide()),
            .lockRelease(name: name(), epoch: wide()),
            .lockExpire(name: name(), epoch: wide()),
            .barrierArrive(name: name(), participants: UInt32(truncatingIfNeeded: wide()), member: wide()),
            .barrierArriveAt(
                name: name(), participants: UInt32(truncatingIfNeeded: wide()), member: wide(), generation: wide()),
            .setRoot(name: name(), address: wide()),
            .allocIn(size: wide(), member: wide(), mode: bool() ? .sequential : .release),
            .leaseRequest(page: wide(), member: wide(), write: bool(), ttlMillis: wide(), now: wide()),
            .leaseRelease(page: wide(), member: wide(), grant: wide(), diff: pageWrite().diff, now: wide()),
            .leaseRelease(page: wide(), member: wide(), grant: wide(), diff: .empty, now: wide()),
            .leaseExpire(page: wide(), grant: wide(), now: wide()),
        ]
        return bodies.map {
            Command(
                company: UInt32(truncatingIfNeeded: wide()), client: ClientTag(session: wide(), sequence: wide()),
                body: $0)
        }
    }
}

extension PageDiff {
    static func make(_ twin: [UInt8], _ page: [UInt8]) -> PageDiff {
        twin.withUnsafeBytes { t in page.withUnsafeBytes { p in PageDiff.make(twin: t, page: p) } }
    }
}

/// Calls `body` with every truncation of `bytes` and every single-byte flip (three flip
/// patterns per byte).
func forEachCorruption(of bytes: [UInt8], _ body: ([UInt8]) -> Void) {
    for length in 0..<bytes.count { body(Array(bytes[0..<length])) }
    for i in bytes.indices {
        for mask: UInt8 in [0x01, 0x80, 0xFF] {
            var corrupt = bytes
            corrupt[i] ^= mask
            body(corrupt)
        }
    }
}

/// Re-seals `body` (a structure without its checksum) with a correct CRC32C trailer, so that a
/// test reaches the checks behind the checksum.
func sealed(_ body: [UInt8]) -> [UInt8] {
    var writer = ByteWriter()
    writer.writeRaw(body)
    writer.appendChecksum()
    return writer.bytes
}
