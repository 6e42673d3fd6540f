import CLZ4

// Reading a diff: every diff may come from the wire, so the compressed bytes, the run list and
// every run are checked before a single byte of the page is written.

extension PageDiff {
    /// Overwrites exactly the bytes that the diff writes, and no others. The whole diff is checked
    /// first (it decompresses to exactly `rawLength` bytes, every run lies inside `page`), so a
    /// diff that fails leaves the page untouched.
    ///
    /// To apply the diffs of several pages all or nothing, `validate(pageSize:)` each first.
    public func apply(to page: UnsafeMutableRawBufferPointer) throws(CodecError) {
        try withRunList(pageSize: page.count) { raw throws(CodecError) in
            try PageDiff.forEachRun(in: raw, pageSize: page.count) { _, _ in }
            guard let target = page.baseAddress else { return }
            try PageDiff.forEachRun(in: raw, pageSize: page.count) { offset, bytes in
                let source = bytes.baseAddress.unsafelyUnwrapped
                if bytes.count <= 8 {
                    // Scattered writes make many tiny runs: a byte loop beats a call to memcpy.
                    for k in 0..<bytes.count {
                        target.storeBytes(
                            of: source.load(fromByteOffset: k, as: UInt8.self), toByteOffset: offset + k, as: UInt8.self
                        )
                    }
                } else {
                    (target + offset).copyMemory(from: source, byteCount: bytes.count)
                }
            }
        }
    }

    /// Applies the diff to `page` (see `apply(to:)`).
    public func apply(to page: inout [UInt8]) throws(CodecError) {
        try page.withUnsafeMutableBytes { buffer in
            Result { () throws(CodecError) in try apply(to: buffer) }
        }.get()
    }

    /// Checks that the diff decompresses and that every run fits a page of `pageSize` bytes,
    /// without writing anything.
    public func validate(pageSize: Int) throws(CodecError) {
        try withRunList(pageSize: pageSize) { raw throws(CodecError) in
            try PageDiff.forEachRun(in: raw, pageSize: pageSize) { _, _ in }
        }
    }

    /// The runs the diff writes, in offset order, checked against a page of `pageSize` bytes
    /// (for the log tool and for tests; without a page size, against the largest page).
    public func runs(pageSize: Int = PageDiff.maxPageSize) throws(CodecError) -> [Run] {
        try withRunList(pageSize: pageSize) { raw throws(CodecError) in
            var runs: [Run] = []
            try PageDiff.forEachRun(in: raw, pageSize: pageSize) { offset, bytes in
                runs.append(Run(offset: offset, bytes: Array(bytes)))
            }
            return runs
        }
    }

    /// How many bytes of the page the diff writes. For a diff made against a twin this counts the
    /// changed bytes; for a raw write, every byte written. Without a page size, the runs are
    /// checked against the largest page.
    public func touchedBytes(pageSize: Int = PageDiff.maxPageSize) throws(CodecError) -> Int {
        try withRunList(pageSize: pageSize) { raw throws(CodecError) in
            var total = 0
            try PageDiff.forEachRun(in: raw, pageSize: pageSize) { _, bytes in total += bytes.count }
            return total
        }
    }

    /// Checks the whole diff against a page of `pageSize` bytes, then calls `body` with each run's
    /// page offset and bytes (valid only inside `body`), in offset order, without allocating. For
    /// callers that write runs somewhere other than one page buffer (the runtime's apply path).
    public func forEachRun(
        pageSize: Int, _ body: (_ offset: Int, _ bytes: UnsafeRawBufferPointer) -> Void
    ) throws(CodecError) {
        try withRunList(pageSize: pageSize) { raw throws(CodecError) in
            try PageDiff.forEachRun(in: raw, pageSize: pageSize) { _, _ in }
            try PageDiff.forEachRun(in: raw, pageSize: pageSize, body)
        }
    }

    /// Decompresses the run list into a temporary buffer of exactly `rawLength` bytes, after
    /// checking `rawLength` against what a page of `pageSize` bytes can need.
    private func withRunList<R>(
        pageSize: Int, _ body: (UnsafeRawBufferPointer) throws(CodecError) -> R
    ) throws(CodecError) -> R {
        guard pageSize >= 0, pageSize <= PageDiff.maxPageSize else {
            throw CodecError(.invalidValue, "page size \(pageSize) is outside 0...\(PageDiff.maxPageSize)")
        }
        let rawCount = Int(rawLength)
        guard rawCount > 0 else {
            guard compressed.isEmpty else {
                throw CodecError(.invalidValue, "page diff with no runs carries \(compressed.count) compressed bytes")
            }
            return try body(UnsafeRawBufferPointer(start: nil, count: 0))
        }
        let limit = PageDiff.rawLengthLimit(pageSize: pageSize)
        guard rawCount <= limit else {
            throw CodecError(
                .lengthOutOfRange,
                "page diff run list of \(rawCount) bytes, more than the \(limit) a \(pageSize)-byte page can need")
        }
        guard !compressed.isEmpty, compressed.count <= PageDiff.maxCompressedLength else {
            throw CodecError(
                .lengthOutOfRange, "page diff of \(compressed.count) compressed bytes for a run list of \(rawCount)")
        }
        let result = withUnsafeTemporaryAllocation(byteCount: rawCount, alignment: 8) { out -> Result<R, CodecError> in
            let produced = compressed.withUnsafeBytes { source in
                LZ4_decompress_safe(
                    source.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: CChar.self),
                    out.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: CChar.self),
                    Int32(source.count), Int32(rawCount))
            }
            guard produced == Int32(rawCount) else {
                return .failure(
                    CodecError(
                        .invalidValue,
                        produced < 0
                            ? "page diff: LZ4 data is corrupt (LZ4_decompress_safe returned \(produced))"
                            : "page diff decompresses to \(produced) bytes, its header says \(rawCount)"))
            }
            return Result { () throws(CodecError) in try body(UnsafeRawBufferPointer(out)) }
        }
        return try result.get()
    }

    /// Walks a run list, checking that each run lies inside a page of `pageSize` bytes, and calls
    /// `body` with each run's offset and bytes. Reads varints by hand: with scattered writes a
    /// diff holds hundreds of runs, and this loop is most of the cost of applying it.
    @inline(__always)
    private static func forEachRun(
        in raw: UnsafeRawBufferPointer, pageSize: Int, _ body: (Int, UnsafeRawBufferPointer) -> Void
    ) throws(CodecError) {
        guard let base = raw.baseAddress else { return }
        let rawCount = raw.count
        var position = 0
        var end = 0

        @inline(__always)
        func readVarint(_ what: StaticString) throws(CodecError) -> UInt64 {
            if position < rawCount {
                let byte = base.load(fromByteOffset: position, as: UInt8.self)
                if byte < 0x80 {
                    position += 1
                    return UInt64(byte)
                }
            }
            var reader = ByteReader(UnsafeRawBufferPointer(rebasing: raw[position...]))
            let value = try reader.readVarint("\(what) of the run at byte \(position) of the run list")
            position += reader.offset
            return value
        }

        while position < rawCount {
            let runOffset = position
            let gap = try readVarint("gap")
            guard gap <= UInt64(pageSize - end) else {
                throw CodecError(
                    .invalidValue,
                    "run at byte \(runOffset) of the run list starts \(gap) bytes after byte \(end), past the \(pageSize)-byte page"
                )
            }
            let start = end + Int(gap)
            let length = try readVarint("length")
            guard length >= 1, length <= UInt64(pageSize - start) else {
                throw CodecError(
                    .invalidValue, "run of \(length) bytes at page offset \(start) does not fit a \(pageSize)-byte page"
                )
            }
            guard length <= UInt64(rawCount - position) else {
                throw CodecError(
                    .truncated,
                    "run of \(length) bytes at page offset \(start) has only \(rawCount - position) bytes left in the run list"
                )
            }
            body(start, UnsafeRawBufferPointer(start: base + position, count: Int(length)))
            position += Int(length)
            end = start + Int(length)
        }
    }
}
