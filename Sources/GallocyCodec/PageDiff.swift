import CLZ4

/// The changed bytes of one page against its twin (the copy taken before the first write),
/// LZ4-compressed. Applying it to any copy of the page overwrites exactly the bytes the writer
/// changed, so concurrent writers of different bytes of one page do not undo each other.
///
/// Uncompressed, a diff is a run list, run after run until `rawLength` bytes are consumed:
///
///     varint gap (equal bytes since the end of the previous run; the first run counts from 0)
///     varint length (at least 1) | length bytes (the new contents)
///
/// `compressed` is that run list compressed with `LZ4_compress_default`; an empty diff (no runs)
/// has `rawLength` 0 and no compressed bytes. The format is described in docs/formats.md; it is
/// pinned by `CommandCodec.version`, since diffs only travel inside commands.
public struct PageDiff: Sendable, Hashable {
    /// The LZ4-compressed run list.
    public var compressed: [UInt8]
    /// Size of the run list before compression.
    public var rawLength: UInt32

    /// A diff from its stored parts, as decoded from a command; nothing is checked until it is
    /// applied or validated.
    public init(compressed: [UInt8], rawLength: UInt32) {
        self.compressed = compressed
        self.rawLength = rawLength
    }

    /// The largest page a diff may describe (2 MiB, a huge page).
    public static let maxPageSize = 1 << 21

    /// The empty diff: it changes nothing.
    public static let empty = PageDiff(compressed: [], rawLength: 0)

    /// True if the diff writes no bytes.
    public var isEmpty: Bool { rawLength == 0 }

    /// The largest run list a page of `pageSize` bytes can need: every other byte a run of its own
    /// (a write of scattered single bytes), each with the largest headers such a page can produce.
    /// Decoders refuse larger `rawLength`s before allocating anything.
    public static func rawLengthLimit(pageSize: Int) -> Int {
        let size = max(0, min(pageSize, maxPageSize))
        return size + (size / 2 + 1) * 2 * varintLength(UInt64(size))
    }

    /// The largest `compressed` a diff of a page of at most `maxPageSize` bytes can have.
    public static let maxCompressedLength = Int(LZ4_compressBound(Int32(rawLengthLimit(pageSize: maxPageSize))))

    /// One run: `bytes` written at byte `offset` of the page.
    public struct Run: Sendable, Hashable {
        /// Where the run starts in the page.
        public var offset: Int
        /// The run's new contents.
        public var bytes: [UInt8]

        public init(offset: Int, bytes: [UInt8]) {
            self.offset = offset
            self.bytes = bytes
        }
    }
}

// MARK: - Making diffs

extension PageDiff {
    /// The diff that turns `twin` into `page`: the runs of bytes that differ, LZ4-compressed.
    /// Both buffers must have the same size, at most `maxPageSize` bytes (these come from the
    /// runtime, not from the wire).
    ///
    /// Runs are exact: a byte equal in twin and page is never part of a run, even between two
    /// nearby runs, because applying the diff to another member's copy of the page must leave
    /// the bytes that other writers changed alone (a run header costs only 2 bytes at 4 KiB, and
    /// LZ4 absorbs much of it). Equal regions are skipped 32 bytes at a time, and words that
    /// differ are split into runs with bit tricks rather than byte by byte.
    public static func make(twin: UnsafeRawBufferPointer, page: UnsafeRawBufferPointer) -> PageDiff {
        withRunList(twin: twin, page: page) { compress($0) }
    }

    /// Calls `body` with the uncompressed run list that turns `twin` into `page` (see
    /// `make(twin:page:)`; the benchmark times the scan apart from the compression).
    package static func withRunList<R>(
        twin: UnsafeRawBufferPointer, page: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> R
    ) -> R {
        precondition(twin.count == page.count, "PageDiff.make: twin has \(twin.count) bytes, page \(page.count)")
        precondition(page.count <= maxPageSize, "PageDiff.make: page of \(page.count) bytes exceeds \(maxPageSize)")
        let count = page.count
        guard count > 0, let twinBase = twin.baseAddress, let pageBase = page.baseAddress else {
            return body(UnsafeRawBufferPointer(start: nil, count: 0))
        }
        // Eight bytes of slack for the word stores of short runs.
        let capacity = rawLengthLimit(pageSize: count) + 8
        return withUnsafeTemporaryAllocation(byteCount: capacity, alignment: 8) { raw in
            var writer = RunListWriter(base: raw.baseAddress.unsafelyUnwrapped, capacity: capacity)
            let low7: UInt64 = 0x7F7F_7F7F_7F7F_7F7F
            let high: UInt64 = 0x8080_8080_8080_8080
            var runStart = -1
            var i = 0
            while i + 8 <= count {
                if runStart < 0 {
                    // No run open: skip equal bytes 32 at a time, the common case of a page
                    // with few writes.
                    while i + 32 <= count {
                        let d =
                            (twinBase.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                                ^ pageBase.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                            | (twinBase.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)
                                ^ pageBase.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self))
                            | (twinBase.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self)
                                ^ pageBase.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self))
                            | (twinBase.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self)
                                ^ pageBase.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self))
                        if d != 0 { break }
                        i += 32
                    }
                    if i + 8 > count { break }
                } else {
                    // A run open: extend it 32 bytes at a time while every byte differs (a page
                    // rewritten in full).
                    while i + 32 <= count {
                        var all = high
                        for k in stride(from: 0, to: 32, by: 8) {
                            let x =
                                twinBase.loadUnaligned(fromByteOffset: i + k, as: UInt64.self)
                                ^ pageBase.loadUnaligned(fromByteOffset: i + k, as: UInt64.self)
                            all &= ((x & low7) &+ low7) | x
                        }
                        if all != high { break }
                        i += 32
                    }
                    if i + 8 > count { break }
                }
                // Little-endian loads: byte j of the word is bits 8j..<8j+8.
                let x =
                    UInt64(littleEndian: twinBase.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                    ^ UInt64(littleEndian: pageBase.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                if x == 0 {
                    if runStart >= 0 {
                        writer.append(run: runStart..<i, from: pageBase, pageCount: count)
                        runStart = -1
                    }
                    i += 8
                    continue
                }
                // The top bit of each byte of `differs` is set if that byte differs (adding 0x7F
                // to the low seven bits carries into the top bit unless they are all zero).
                let differs = (((x & low7) &+ low7) | x) & high
                if differs == high, runStart >= 0 {
                    // Every byte differs and a run is open: it simply continues.
                    i += 8
                    continue
                }
                var bit = 0
                while bit < 64 {
                    if runStart < 0 {
                        let rest = differs >> UInt64(bit)
                        if rest == 0 { break }
                        bit += rest.trailingZeroBitCount & ~7
                        runStart = i + bit >> 3
                    } else {
                        let rest = (~differs & high) >> UInt64(bit)
                        if rest == 0 { break }
                        bit += rest.trailingZeroBitCount & ~7
                        writer.append(run: runStart..<i + bit >> 3, from: pageBase, pageCount: count)
                        runStart = -1
                    }
                }
                i += 8
            }
            while i < count {
                let differs =
                    twinBase.load(fromByteOffset: i, as: UInt8.self) != pageBase.load(fromByteOffset: i, as: UInt8.self)
                if differs, runStart < 0 {
                    runStart = i
                } else if !differs, runStart >= 0 {
                    writer.append(run: runStart..<i, from: pageBase, pageCount: count)
                    runStart = -1
                }
                i += 1
            }
            if runStart >= 0 { writer.append(run: runStart..<count, from: pageBase, pageCount: count) }
            return body(UnsafeRawBufferPointer(start: raw.baseAddress, count: writer.count))
        }
    }

    /// A diff that writes `bytes` at `offset`, every byte of them, also those equal to what the
    /// page holds now (a client's write of raw bytes, as opposed to a diff against a twin).
    /// Whether the run fits the page is checked when the diff is applied.
    public init(writing bytes: UnsafeRawBufferPointer, atOffset offset: Int) {
        precondition(
            offset >= 0 && bytes.count <= PageDiff.maxPageSize,
            "PageDiff(writing:) offset \(offset), \(bytes.count) bytes")
        guard bytes.count > 0, let base = bytes.baseAddress else {
            self = .empty
            return
        }
        let capacity = 2 * 10 + bytes.count
        self = withUnsafeTemporaryAllocation(byteCount: capacity, alignment: 8) { raw in
            var writer = RunListWriter(base: raw.baseAddress.unsafelyUnwrapped, capacity: capacity)
            writer.append(gap: offset, bytes: UnsafeRawBufferPointer(start: base, count: bytes.count))
            return PageDiff.compress(UnsafeRawBufferPointer(start: raw.baseAddress, count: writer.count))
        }
    }

    /// A diff that writes `bytes` at `offset` (see `init(writing:atOffset:)`).
    public init(writing bytes: [UInt8], atOffset offset: Int) {
        self = bytes.withUnsafeBytes { PageDiff(writing: $0, atOffset: offset) }
    }

    /// A diff that writes every byte of `runs`. Runs must be in offset order and must not
    /// overlap (runs that touch are joined); empty runs are dropped.
    public static func fromRuns(_ runs: some Sequence<Run>) throws(CodecError) -> PageDiff {
        var joined: [Run] = []
        for run in runs where !run.bytes.isEmpty {
            guard run.offset >= 0, run.bytes.count <= maxPageSize, run.offset <= maxPageSize - run.bytes.count else {
                throw CodecError(
                    .invalidValue,
                    "run at offset \(run.offset) of \(run.bytes.count) bytes leaves the largest page (\(maxPageSize) bytes)"
                )
            }
            if let previous = joined.last {
                let previousEnd = previous.offset + previous.bytes.count
                guard run.offset >= previousEnd else {
                    throw CodecError(
                        .invalidValue,
                        "run at offset \(run.offset) overlaps or precedes the run ending at \(previousEnd)")
                }
                if run.offset == previousEnd {
                    joined[joined.count - 1].bytes.append(contentsOf: run.bytes)
                    continue
                }
            }
            joined.append(run)
        }
        guard !joined.isEmpty else { return .empty }
        let capacity = joined.reduce(0) { $0 + $1.bytes.count + 20 }
        return withUnsafeTemporaryAllocation(byteCount: capacity, alignment: 8) { raw in
            var writer = RunListWriter(base: raw.baseAddress.unsafelyUnwrapped, capacity: capacity)
            var end = 0
            for run in joined {
                run.bytes.withUnsafeBytes { writer.append(gap: run.offset - end, bytes: $0) }
                end = run.offset + run.bytes.count
            }
            return compress(UnsafeRawBufferPointer(start: raw.baseAddress, count: writer.count))
        }
    }

    private static func compress(_ raw: UnsafeRawBufferPointer) -> PageDiff {
        guard raw.count > 0, let source = raw.baseAddress else { return .empty }
        let bound = Int(LZ4_compressBound(Int32(raw.count)))
        let compressed = [UInt8](unsafeUninitializedCapacity: bound) { buffer, initialized in
            let written = LZ4_compress_default(
                source.assumingMemoryBound(to: CChar.self),
                UnsafeMutableRawPointer(buffer.baseAddress.unsafelyUnwrapped).assumingMemoryBound(to: CChar.self),
                Int32(raw.count), Int32(bound))
            // LZ4 cannot fail with a destination of LZ4_compressBound bytes and a source this small.
            precondition(written > 0, "LZ4_compress_default failed on \(raw.count) bytes")
            initialized = Int(written)
        }
        return PageDiff(compressed: compressed, rawLength: UInt32(raw.count))
    }

    static func varintLength(_ value: UInt64) -> Int {
        value == 0 ? 1 : (64 - value.leadingZeroBitCount + 6) / 7
    }
}

/// Appends runs to a buffer sized by the caller for the worst case.
private struct RunListWriter {
    let base: UnsafeMutableRawPointer
    let capacity: Int
    private(set) var count = 0
    private var end = 0

    init(base: UnsafeMutableRawPointer, capacity: Int) {
        self.base = base
        self.capacity = capacity
    }

    /// Appends the run `run` of `page` (of `pageCount` bytes) to the run list.
    @inline(__always)
    mutating func append(run: Range<Int>, from page: UnsafeRawPointer, pageCount: Int) {
        let gap = run.lowerBound - end
        let length = run.count
        if gap < 0x80, length <= 8, run.lowerBound + 8 <= pageCount, count + 10 <= capacity {
            // Scattered writes make many short runs. Storing all eight bytes of the word at the
            // run's start and counting only `length` of them avoids a data-dependent copy loop;
            // the bytes past the run are overwritten by the next run or ignored.
            base.storeBytes(of: UInt8(truncatingIfNeeded: gap), toByteOffset: count, as: UInt8.self)
            base.storeBytes(of: UInt8(truncatingIfNeeded: length), toByteOffset: count + 1, as: UInt8.self)
            base.storeBytes(
                of: page.loadUnaligned(fromByteOffset: run.lowerBound, as: UInt64.self), toByteOffset: count + 2,
                as: UInt64.self)
            count += 2 + length
        } else {
            append(gap: gap, bytes: UnsafeRawBufferPointer(start: page + run.lowerBound, count: length))
        }
        end = run.upperBound
    }

    @inline(__always)
    mutating func append(gap: Int, bytes: UnsafeRawBufferPointer) {
        writeVarint(UInt64(gap))
        writeVarint(UInt64(bytes.count))
        precondition(count + bytes.count <= capacity, "run list overflows its buffer")
        let source = bytes.baseAddress.unsafelyUnwrapped
        if bytes.count <= 8 {
            // Scattered writes make many tiny runs: a byte loop beats a call to memcpy.
            for k in 0..<bytes.count {
                base.storeBytes(
                    of: source.load(fromByteOffset: k, as: UInt8.self), toByteOffset: count + k, as: UInt8.self)
            }
        } else {
            base.advanced(by: count).copyMemory(from: source, byteCount: bytes.count)
        }
        count += bytes.count
    }

    @inline(__always)
    private mutating func writeVarint(_ value: UInt64) {
        if value < 0x80, count < capacity {
            base.storeBytes(of: UInt8(truncatingIfNeeded: value), toByteOffset: count, as: UInt8.self)
            count += 1
            return
        }
        precondition(count + PageDiff.varintLength(value) <= capacity, "run list overflows its buffer")
        var v = value
        while v >= 0x80 {
            base.storeBytes(of: UInt8(truncatingIfNeeded: v) | 0x80, toByteOffset: count, as: UInt8.self)
            count += 1
            v >>= 7
        }
        base.storeBytes(of: UInt8(v), toByteOffset: count, as: UInt8.self)
        count += 1
    }
}
