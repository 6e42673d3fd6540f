/// The stored form of a `Command`, the data of a normal Raft entry:
///
///     u8 version (1) | u8 body tag | varint company | varint session | varint sequence
///     body fields (by tag, see `Tag`) | u32 crc32c of every byte before it
///
/// Names (locks, barriers, roots) are a varint length and at most `maxNameLength` bytes of UTF-8.
/// A page diff inside a write is `varint page | varint rawLength | varint compressed length |
/// compressed`. Tags and layouts are part of the log format: a change to either is a new
/// `version`, and old versions stay readable for as long as logs holding them may exist. A new
/// tag (a new body case) is not a change of either: it keeps the version, since what older
/// builds wrote reads exactly as before, and an older build refuses the new tag (`unknownTag`).
/// The layout of every body is described byte by byte in docs/formats.md.
public enum CommandCodec {
    /// The format version this build writes and reads (byte 0 of every command).
    public static let version: UInt8 = 1
    /// The longest lock, barrier or root name, in UTF-8 bytes.
    public static let maxNameLength = 256
    /// The most pages one write may carry (4 GiB of 4 KiB pages); the input size bounds it further.
    public static let maxPagesPerWrite = 1 << 20

    /// The tag of each `CommandBody` case, the second byte of every command. Never renumber.
    package enum Tag: UInt8, CaseIterable {
        case bootstrap = 1
        case noop = 2
        case alloc = 3
        case free = 4
        case write = 5
        case atomic = 6
        case lockAcquire = 7
        case lockRelease = 8
        case lockExpire = 9
        case barrierArrive = 10
        case setRoot = 11
        case barrierArriveAt = 12
        case allocIn = 13
        case leaseRequest = 14
        case leaseRelease = 15
        case leaseExpire = 16

        /// How decoding errors name the command. A literal per case: interpolating the enum
        /// (`"\(tag)"`) goes through reflection, and decoding is on the replay hot path.
        var label: String {
            switch self {
            case .bootstrap: "bootstrap command"
            case .noop: "noop command"
            case .alloc: "alloc command"
            case .free: "free command"
            case .write: "write command"
            case .atomic: "atomic command"
            case .lockAcquire: "lockAcquire command"
            case .lockRelease: "lockRelease command"
            case .lockExpire: "lockExpire command"
            case .barrierArrive: "barrierArrive command"
            case .setRoot: "setRoot command"
            case .barrierArriveAt: "barrierArriveAt command"
            case .allocIn: "allocIn command"
            case .leaseRequest: "leaseRequest command"
            case .leaseRelease: "leaseRelease command"
            case .leaseExpire: "leaseExpire command"
            }
        }
    }

    /// The tag of each `AtomicOp` case.
    private enum AtomicTag: UInt8 {
        case compareAndSwap = 1
        case add = 2
        case swap = 3
    }

    /// The smallest encoded page write: page, rawLength and compressed length, one byte each.
    private static let minimumPageWriteSize = 3

    /// Encodes `command`, checksum included. A command that breaks the limits (see
    /// `validate(_:)`) still encodes, but no member will decode it: validate what comes from
    /// clients before proposing it.
    public static func encode(_ command: Command) -> [UInt8] {
        var capacity = 32
        if case .write(_, let pages, _, _) = command.body {
            for page in pages { capacity += page.diff.compressed.count + 16 }
        }
        if case .leaseRelease(_, _, _, let diff, _) = command.body { capacity += diff.compressed.count + 16 }
        var writer = ByteWriter(capacity: capacity)
        writer.write(version)
        writer.write(command.body.tag.rawValue)
        writer.writeVarint(UInt64(command.company))
        writer.writeVarint(command.client.session)
        writer.writeVarint(command.client.sequence)
        switch command.body {
        case .bootstrap(let settings):
            writer.writeVarint(settings.clusterID)
            writer.writeVarint(settings.heapBase)
            writer.writeVarint(settings.heapSize)
            writer.writeVarint(UInt64(settings.pageSize))
        case .noop:
            break
        case .alloc(let size, let member):
            writer.writeVarint(size)
            writer.writeVarint(member)
        case .free(let address):
            writer.writeVarint(address)
        case .write(let member, let pages, let releaseLock, let releaseEpoch):
            writer.writeVarint(member)
            writer.writeVarint(UInt64(pages.count))
            for page in pages {
                writer.writeVarint(page.page)
                writer.writeVarint(UInt64(page.diff.rawLength))
                writer.writeBytes(page.diff.compressed)
            }
            writer.write(releaseLock != nil)
            if let releaseLock { writer.writeString(releaseLock) }
            writer.writeVarint(releaseEpoch)
        case .atomic(let address, let op):
            writer.writeVarint(address)
            switch op {
            case .compareAndSwap(let expect, let value):
                writer.write(AtomicTag.compareAndSwap.rawValue)
                writer.writeVarint(expect)
                writer.writeVarint(value)
            case .add(let delta):
                writer.write(AtomicTag.add.rawValue)
                writer.writeVarint(delta)
            case .swap(let value):
                writer.write(AtomicTag.swap.rawValue)
                writer.writeVarint(value)
            }
        case .lockAcquire(let name, let member, let ttlMillis, let now):
            writer.writeString(name)
            writer.writeVarint(member)
            writer.writeVarint(ttlMillis)
            writer.writeVarint(now)
        case .lockRelease(let name, let epoch), .lockExpire(let name, let epoch):
            writer.writeString(name)
            writer.writeVarint(epoch)
        case .barrierArrive(let name, let participants, let member):
            writer.writeString(name)
            writer.writeVarint(UInt64(participants))
            writer.writeVarint(member)
        case .barrierArriveAt(let name, let participants, let member, let generation):
            writer.writeString(name)
            writer.writeVarint(UInt64(participants))
            writer.writeVarint(member)
            writer.writeVarint(generation)
        case .setRoot(let name, let address):
            writer.writeString(name)
            writer.writeVarint(address)
        case .allocIn(let size, let member, let mode):
            writer.writeVarint(size)
            writer.writeVarint(member)
            writer.write(mode.rawValue)
        case .leaseRequest(let page, let member, let write, let ttlMillis, let now):
            writer.writeVarint(page)
            writer.writeVarint(member)
            writer.write(write)
            writer.writeVarint(ttlMillis)
            writer.writeVarint(now)
        case .leaseRelease(let page, let member, let grant, let diff, let now):
            writer.writeVarint(page)
            writer.writeVarint(member)
            writer.writeVarint(grant)
            writer.writeVarint(UInt64(diff.rawLength))
            writer.writeBytes(diff.compressed)
            writer.writeVarint(now)
        case .leaseExpire(let page, let grant, let now):
            writer.writeVarint(page)
            writer.writeVarint(grant)
            writer.writeVarint(now)
        }
        writer.appendChecksum()
        return writer.bytes
    }

    /// Checks the limits that decoding enforces (name lengths, page counts, diff sizes, total
    /// size), so that a command from a client is refused before it is proposed rather than
    /// committed and then refused by every member.
    public static func validate(_ command: Command) throws(CodecError) {
        func checkName(_ name: String, _ what: String) throws(CodecError) {
            guard name.utf8.count <= maxNameLength else {
                throw CodecError(
                    .lengthOutOfRange, "\(what) is \(name.utf8.count) bytes of UTF-8, more than \(maxNameLength)")
            }
        }
        var size = 64
        switch command.body {
        case .bootstrap, .noop, .alloc, .free, .atomic, .allocIn, .leaseRequest, .leaseExpire:
            break
        case .leaseRelease(let page, _, _, let diff, _):
            try checkDiffShape(rawLength: UInt64(diff.rawLength), compressedCount: diff.compressed.count, page: page)
            size += diff.compressed.count + 16
        case .write(_, let pages, let releaseLock, _):
            guard pages.count <= maxPagesPerWrite else {
                throw CodecError(.lengthOutOfRange, "write of \(pages.count) pages, more than \(maxPagesPerWrite)")
            }
            for page in pages {
                try checkDiffShape(
                    rawLength: UInt64(page.diff.rawLength), compressedCount: page.diff.compressed.count, page: page.page
                )
                size += page.diff.compressed.count + 16
            }
            if let releaseLock { try checkName(releaseLock, "released lock name") }
        case .lockAcquire(let name, _, _, _), .lockRelease(let name, _), .lockExpire(let name, _):
            try checkName(name, "lock name")
        case .barrierArrive(let name, _, _), .barrierArriveAt(let name, _, _, _):
            try checkName(name, "barrier name")
        case .setRoot(let name, _):
            try checkName(name, "root name")
        }
        guard size <= EntryCodec.maxDataSize else {
            throw CodecError(
                .lengthOutOfRange,
                "command of about \(size) bytes, more than an entry holds (\(EntryCodec.maxDataSize))")
        }
    }

    /// Decodes one command that fills `bytes` exactly, verifying its version and checksum.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(CodecError) -> Command {
        guard let first = bytes.first else { throw CodecError(.truncated, "command is empty") }
        guard first == version else {
            throw CodecError(.unknownVersion, "command format version \(first), this build reads \(version)")
        }
        let body = try CRC32C.verifyTrailer(bytes, "command")
        var reader = ByteReader(body)
        _ = try reader.readUInt8("command version")
        let rawTag = try reader.readUInt8("command tag")
        guard let tag = Tag(rawValue: rawTag) else { throw CodecError(.unknownTag, "command tag \(rawTag)") }
        let rawCompany = try reader.readVarint("command company")
        guard let company = Company(exactly: rawCompany) else {
            throw CodecError(.invalidValue, "command company \(rawCompany) does not fit 32 bits")
        }
        let session = try reader.readVarint("command session")
        let sequence = try reader.readVarint("command sequence")
        let what = tag.label
        let commandBody: CommandBody
        switch tag {
        case .bootstrap:
            let clusterID = try reader.readVarint("\(what): cluster id")
            let heapBase = try reader.readVarint("\(what): heap base")
            let heapSize = try reader.readVarint("\(what): heap size")
            let rawPageSize = try reader.readVarint("\(what): page size")
            guard let pageSize = UInt32(exactly: rawPageSize) else {
                throw CodecError(.invalidValue, "\(what): page size \(rawPageSize) does not fit 32 bits")
            }
            commandBody = .bootstrap(
                ClusterSettings(clusterID: clusterID, heapBase: heapBase, heapSize: heapSize, pageSize: pageSize))
        case .noop:
            commandBody = .noop
        case .alloc:
            let size = try reader.readVarint("\(what): size")
            let member = try reader.readVarint("\(what): member")
            commandBody = .alloc(size: size, member: member)
        case .free:
            commandBody = .free(address: try reader.readVarint("\(what): address"))
        case .write:
            let member = try reader.readVarint("\(what): member")
            let count = try reader.readCount(
                "\(what): page count", limit: maxPagesPerWrite, minimumElementSize: minimumPageWriteSize)
            var pages: [PageWrite] = []
            pages.reserveCapacity(count)
            for i in 0..<count {
                let page = try reader.readVarint("\(what): page number of page write \(i)")
                let rawLength = try reader.readVarint("\(what): raw length of page \(page)")
                let compressed = try reader.readBytes(
                    "\(what): compressed diff of page \(page)", limit: PageDiff.maxCompressedLength)
                try checkDiffShape(rawLength: rawLength, compressedCount: compressed.count, page: page)
                pages.append(
                    PageWrite(page: page, diff: PageDiff(compressed: compressed, rawLength: UInt32(rawLength))))
            }
            let releaseLock =
                try reader.readBool("\(what): release flag")
                ? try readName(&reader, "\(what): released lock name") : nil
            let releaseEpoch = try reader.readVarint("\(what): release epoch")
            commandBody = .write(member: member, pages: pages, releaseLock: releaseLock, releaseEpoch: releaseEpoch)
        case .atomic:
            let address = try reader.readVarint("\(what): address")
            let rawOp = try reader.readUInt8("\(what): operation")
            let op: AtomicOp
            switch AtomicTag(rawValue: rawOp) {
            case .compareAndSwap:
                let expect = try reader.readVarint("\(what): expected value")
                op = .compareAndSwap(expect: expect, value: try reader.readVarint("\(what): new value"))
            case .add:
                op = .add(try reader.readVarint("\(what): addend"))
            case .swap:
                op = .swap(try reader.readVarint("\(what): new value"))
            case nil:
                throw CodecError(.unknownTag, "\(what): atomic operation \(rawOp)")
            }
            commandBody = .atomic(address: address, op: op)
        case .lockAcquire:
            let name = try readName(&reader, "\(what): lock name")
            let member = try reader.readVarint("\(what): member")
            let ttl = try reader.readVarint("\(what): ttl")
            let now = try reader.readVarint("\(what): now")
            commandBody = .lockAcquire(name: name, member: member, ttlMillis: ttl, now: now)
        case .lockRelease:
            let name = try readName(&reader, "\(what): lock name")
            commandBody = .lockRelease(name: name, epoch: try reader.readVarint("\(what): epoch"))
        case .lockExpire:
            let name = try readName(&reader, "\(what): lock name")
            commandBody = .lockExpire(name: name, epoch: try reader.readVarint("\(what): epoch"))
        case .barrierArrive:
            let name = try readName(&reader, "\(what): barrier name")
            let rawParticipants = try reader.readVarint("\(what): participants")
            guard let participants = UInt32(exactly: rawParticipants) else {
                throw CodecError(.invalidValue, "\(what): participants \(rawParticipants) does not fit 32 bits")
            }
            commandBody = .barrierArrive(
                name: name, participants: participants, member: try reader.readVarint("\(what): member"))
        case .barrierArriveAt:
            let name = try readName(&reader, "\(what): barrier name")
            let rawParticipants = try reader.readVarint("\(what): participants")
            guard let participants = UInt32(exactly: rawParticipants) else {
                throw CodecError(.invalidValue, "\(what): participants \(rawParticipants) does not fit 32 bits")
            }
            let member = try reader.readVarint("\(what): member")
            commandBody = .barrierArriveAt(
                name: name, participants: participants, member: member,
                generation: try reader.readVarint("\(what): generation"))
        case .setRoot:
            let name = try readName(&reader, "\(what): root name")
            commandBody = .setRoot(name: name, address: try reader.readVarint("\(what): address"))
        case .allocIn:
            let size = try reader.readVarint("\(what): size")
            let member = try reader.readVarint("\(what): member")
            let rawMode = try reader.readUInt8("\(what): mode")
            guard let mode = AllocationMode(rawValue: rawMode) else {
                throw CodecError(.unknownTag, "\(what): allocation mode \(rawMode)")
            }
            commandBody = .allocIn(size: size, member: member, mode: mode)
        case .leaseRequest:
            let page = try reader.readVarint("\(what): page")
            let member = try reader.readVarint("\(what): member")
            let write = try reader.readBool("\(what): write flag")
            let ttl = try reader.readVarint("\(what): ttl")
            let now = try reader.readVarint("\(what): now")
            commandBody = .leaseRequest(page: page, member: member, write: write, ttlMillis: ttl, now: now)
        case .leaseRelease:
            let page = try reader.readVarint("\(what): page")
            let member = try reader.readVarint("\(what): member")
            let grant = try reader.readVarint("\(what): grant")
            let rawLength = try reader.readVarint("\(what): raw length of the diff")
            let compressed = try reader.readBytes("\(what): compressed diff", limit: PageDiff.maxCompressedLength)
            try checkDiffShape(rawLength: rawLength, compressedCount: compressed.count, page: page)
            let now = try reader.readVarint("\(what): now")
            commandBody = .leaseRelease(
                page: page, member: member, grant: grant,
                diff: PageDiff(compressed: compressed, rawLength: UInt32(rawLength)), now: now)
        case .leaseExpire:
            let page = try reader.readVarint("\(what): page")
            let grant = try reader.readVarint("\(what): grant")
            commandBody = .leaseExpire(page: page, grant: grant, now: try reader.readVarint("\(what): now"))
        }
        try reader.expectEnd("command")
        return Command(company: company, client: ClientTag(session: session, sequence: sequence), body: commandBody)
    }

    /// Decodes one command that fills `bytes` exactly (see `decode(_:)` on a buffer).
    public static func decode(_ bytes: [UInt8]) throws(CodecError) -> Command {
        try bytes.withUnsafeBytes { raw in Result { () throws(CodecError) in try decode(raw) } }.get()
    }

    private static func readName(_ reader: inout ByteReader, _ what: String) throws(CodecError) -> String {
        try reader.readString(what, limit: maxNameLength)
    }

    /// The checks on a diff that need no page size: an empty run list has no compressed bytes
    /// and the other way round, and neither length exceeds what the largest page can need.
    private static func checkDiffShape(rawLength: UInt64, compressedCount: Int, page: UInt64) throws(CodecError) {
        let limit = PageDiff.rawLengthLimit(pageSize: PageDiff.maxPageSize)
        guard rawLength <= UInt64(limit) else {
            throw CodecError(
                .lengthOutOfRange,
                "diff of page \(page): run list of \(rawLength) bytes, more than the \(limit) any page can need")
        }
        guard compressedCount <= PageDiff.maxCompressedLength else {
            throw CodecError(
                .lengthOutOfRange,
                "diff of page \(page): \(compressedCount) compressed bytes, more than \(PageDiff.maxCompressedLength)")
        }
        guard (rawLength == 0) == (compressedCount == 0) else {
            throw CodecError(
                .invalidValue,
                "diff of page \(page): run list of \(rawLength) bytes with \(compressedCount) compressed bytes")
        }
    }
}

extension CommandBody {
    /// The stable tag of this case in the log format.
    package var tag: CommandCodec.Tag {
        switch self {
        case .bootstrap: .bootstrap
        case .noop: .noop
        case .alloc: .alloc
        case .free: .free
        case .write: .write
        case .atomic: .atomic
        case .lockAcquire: .lockAcquire
        case .lockRelease: .lockRelease
        case .lockExpire: .lockExpire
        case .barrierArrive: .barrierArrive
        case .setRoot: .setRoot
        case .barrierArriveAt: .barrierArriveAt
        case .allocIn: .allocIn
        case .leaseRequest: .leaseRequest
        case .leaseRelease: .leaseRelease
        case .leaseExpire: .leaseExpire
        }
    }

    /// A lowercase word naming the case, for the log tool's `type` field: `bootstrap`, `noop`,
    /// `alloc`, `free`, `write`, `atomic`, `lock_acquire`, `lock_release`, `lock_expire`,
    /// `barrier` (both kinds of arrival: `barrierArrive` and `barrierArriveAt`), `set_root`,
    /// `lease_request`, `lease_release`, `lease_expire`; `allocIn` is an `alloc` (with a mode).
    public var kindName: String {
        switch self {
        case .bootstrap: "bootstrap"
        case .noop: "noop"
        case .alloc: "alloc"
        case .free: "free"
        case .write: "write"
        case .atomic: "atomic"
        case .lockAcquire: "lock_acquire"
        case .lockRelease: "lock_release"
        case .lockExpire: "lock_expire"
        case .barrierArrive, .barrierArriveAt: "barrier"
        case .setRoot: "set_root"
        case .allocIn: "alloc"
        case .leaseRequest: "lease_request"
        case .leaseRelease: "lease_release"
        case .leaseExpire: "lease_expire"
        }
    }
}

extension Command {
    /// The stored form of the command (see `CommandCodec`).
    public func encode() -> [UInt8] { CommandCodec.encode(self) }

    /// Decodes a command from its stored form (see `CommandCodec.decode(_:)`).
    public init(decoding bytes: [UInt8]) throws(CodecError) { self = try CommandCodec.decode(bytes) }

    /// Decodes a command from its stored form (see `CommandCodec.decode(_:)`).
    public init(decoding bytes: UnsafeRawBufferPointer) throws(CodecError) { self = try CommandCodec.decode(bytes) }

    /// Checks the limits decoding enforces (see `CommandCodec.validate(_:)`).
    public func validate() throws(CodecError) { try CommandCodec.validate(self) }

    /// The body's kind, for the log tool (see `CommandBody.kindName`).
    public var kindName: String { body.kindName }
}
