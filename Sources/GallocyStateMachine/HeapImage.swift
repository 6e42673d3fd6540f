import GallocyCodec

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The bytes of the shared heap on one member: `settings.heapSize` bytes, byte 0 being the byte at
/// virtual address `settings.heapBase`. The state machine applies committed writes, frees and
/// atomics to it, in log order, so that members that applied the same entries hold the same bytes.
///
/// The memory is either an anonymous private mapping the image owns (`init(settings:)`: reserved
/// with `MAP_NORESERVE`, so a 256 MiB heap that is mostly never written costs next to nothing), or
/// a writable region owned by someone else (`init(base:settings:)`: the runtime's always-writable
/// alias of its memfd), which the image never unmaps.
///
/// Ownership: like the page table, an image is owned by one thread or actor at a time (the
/// engine's apply loop, the log tool); it is not `Sendable`. Others may read the same memory
/// through their own mapping (the runtime's application view): the image writes aligned 8-byte
/// words with single stores, so an atomic's word is never seen torn.
package final class HeapImage {
    /// The cluster settings the heap was made for.
    package let settings: ClusterSettings
    /// Byte 0 of the heap in this process (not `settings.heapBase`, which is the address the
    /// application sees; they are equal only when the runtime maps the heap there).
    package let base: UnsafeMutableRawPointer
    /// `settings.heapSize` as an `Int`.
    package let size: Int
    /// `settings.pageSize` as an `Int`.
    package let pageSize: Int
    /// How many pages the heap holds.
    package let pageCount: Int
    /// True when the image mapped the memory itself and unmaps it on deinit.
    package let ownsMemory: Bool
    /// The pages that may hold non-zero bytes (see `TouchedPages`).
    var touched: TouchedPages
    /// When set, every change goes through it and every read sees its committed contents (the
    /// runtime, whose application also maps this memory: see `HeapImageWriter`). Set it before
    /// the first change; nil for the node's and the log tool's private images.
    package var writer: (any HeapImageWriter)?
    /// Told the lease effects of each applied entry (page leases; see `PageLeaseObserver`).
    package var leaseObserver: (any PageLeaseObserver)?

    /// A heap in a fresh anonymous mapping (`mmap(PROT_READ|PROT_WRITE,
    /// MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE)`): every byte reads as zero, and pages cost memory
    /// only once written.
    package init(settings: ClusterSettings) throws(StateMachineError) {
        let (size, pageSize) = try Self.check(settings)
        let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let mapped, mapped != MAP_FAILED else {
            throw StateMachineError(.system, "mmap of a \(size)-byte heap failed: errno \(errno)")
        }
        self.settings = settings
        self.base = mapped
        self.size = size
        self.pageSize = pageSize
        self.pageCount = size / pageSize
        self.ownsMemory = true
        self.touched = TouchedPages(count: size / pageSize, full: false)
    }

    /// A heap in memory owned by the caller: `settings.heapSize` writable bytes at `base`, which
    /// must stay mapped for the image's lifetime and be 8-byte aligned (page-aligned is best).
    /// Its current content is the heap's content. With `initiallyZero` (a fresh memfd), the image
    /// trusts that every byte is zero and from then on scans only the pages it writes; without
    /// it, the first scans read every page.
    package init(base: UnsafeMutableRawPointer, settings: ClusterSettings, initiallyZero: Bool = true)
        throws(StateMachineError)
    {
        let (size, pageSize) = try Self.check(settings)
        guard UInt(bitPattern: base) % 8 == 0 else {
            throw StateMachineError(.invalidArgument, "the heap region at \(base) is not 8-byte aligned")
        }
        self.settings = settings
        self.base = base
        self.size = size
        self.pageSize = pageSize
        self.pageCount = size / pageSize
        self.ownsMemory = false
        self.touched = TouchedPages(count: size / pageSize, full: !initiallyZero)
    }

    deinit {
        if ownsMemory { munmap(base, size) }
    }

    /// The heap and page sizes as `Int`s, after checking that the settings describe a heap this
    /// process can hold (the page table checks the same rules when it applies the bootstrap).
    /// The largest heap an image holds (1 TiB): far more than a member maps today, and small
    /// enough that the mapping and the page bitmap always fit.
    package static let maxHeapSize: UInt64 = 1 << 40
    /// The most pages an image holds (its bitmap is then 32 MiB).
    package static let maxPageCount: UInt64 = 1 << 28

    /// Why no image can hold a heap with `settings`, or nil when one can. The rules are the
    /// page table's plus fixed limits (`maxHeapSize`, `maxPageCount`, `PageDiff.maxPageSize`), so
    /// every member reaches the same answer for the same bootstrap entry.
    package static func problem(with settings: ClusterSettings) -> String? {
        let pageSize = UInt64(settings.pageSize)
        guard pageSize >= 8, pageSize & (pageSize - 1) == 0, pageSize <= UInt64(PageDiff.maxPageSize) else {
            return "page size \(pageSize) is not a power of two in 8...\(PageDiff.maxPageSize)"
        }
        guard settings.heapSize > 0, settings.heapSize % pageSize == 0 else {
            return "heap size \(settings.heapSize) is not a positive multiple of the page size \(pageSize)"
        }
        guard settings.heapSize <= maxHeapSize, settings.heapSize / pageSize <= maxPageCount else {
            return "a heap of \(settings.heapSize) bytes in pages of \(pageSize) is more than an image holds "
                + "(\(maxHeapSize) bytes, \(maxPageCount) pages)"
        }
        return nil
    }

    /// The heap and page sizes as `Int`s, after checking that an image can hold the heap.
    private static func check(_ settings: ClusterSettings) throws(StateMachineError) -> (size: Int, pageSize: Int) {
        if let problem = problem(with: settings) { throw StateMachineError(.invalidArgument, problem) }
        return (Int(settings.heapSize), Int(settings.pageSize))
    }

    // MARK: Addresses

    /// The offset in the heap of [address, address + length), or an error when the range leaves
    /// the heap.
    package func offset(of address: UInt64, length: UInt64) throws(StateMachineError) -> Int {
        let heapBase = settings.heapBase
        guard address >= heapBase, address - heapBase <= UInt64(size), length <= UInt64(size) - (address - heapBase)
        else {
            throw StateMachineError(
                .invalidArgument,
                "[0x\(String(address, radix: 16)), +\(length)) leaves the heap [0x\(String(heapBase, radix: 16)), +\(size))"
            )
        }
        return Int(address - heapBase)
    }

    /// The bytes of page `page` (which must be below `pageCount`).
    func pageBytes(_ page: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base + page * pageSize, count: pageSize)
    }

    // MARK: Reading

    /// A copy of the `length` bytes at heap address `address`. Throws `.invalidArgument` when the
    /// range leaves the heap. Memory that was never written, or was freed, reads as zeros.
    package func read(address: UInt64, length: Int) throws(StateMachineError) -> [UInt8] {
        guard length >= 0 else { throw StateMachineError(.invalidArgument, "read of \(length) bytes") }
        let offset = try offset(of: address, length: UInt64(length))
        guard writer != nil else { return [UInt8](UnsafeRawBufferPointer(start: base + offset, count: length)) }
        return [UInt8](unsafeUninitializedCapacity: length) { buffer, initialized in
            copyCommitted(offset: offset, count: length, into: UnsafeMutableRawPointer(buffer.baseAddress!))
            initialized = length
        }
    }

    /// Copies the committed bytes [offset, offset + count) into `target`, page by page through the
    /// writer when there is one.
    func copyCommitted(offset: Int, count: Int, into target: UnsafeMutableRawPointer) {
        guard let writer else {
            target.copyMemory(from: base + offset, byteCount: count)
            return
        }
        var done = 0
        while done < count {
            let page = (offset + done) / pageSize
            let within = (offset + done) - page * pageSize
            let chunk = min(count - done, pageSize - within)
            writer.withCommittedPage(page) { bytes in
                (target + done).copyMemory(from: bytes.baseAddress.unsafelyUnwrapped + within, byteCount: chunk)
            }
            done += chunk
        }
    }

    /// Calls `body` with the committed bytes of page `page`.
    func withCommittedPage<R>(_ page: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        guard let writer else { return body(UnsafeRawBufferPointer(pageBytes(page))) }
        var result: R?
        writer.withCommittedPage(page) { result = body($0) }
        return result.unsafelyUnwrapped
    }

    /// Calls `body` with the `length` bytes at `address`, without copying them; the buffer is
    /// valid only inside `body`, and only until the image is changed.
    package func withBytes<R>(address: UInt64, length: Int, _ body: (UnsafeRawBufferPointer) -> R)
        throws(StateMachineError) -> R
    {
        guard length >= 0 else { throw StateMachineError(.invalidArgument, "read of \(length) bytes") }
        let offset = try offset(of: address, length: UInt64(length))
        guard writer != nil else { return body(UnsafeRawBufferPointer(start: base + offset, count: length)) }
        return withUnsafeTemporaryAllocation(byteCount: max(length, 1), alignment: 8) { scratch in
            copyCommitted(offset: offset, count: length, into: scratch.baseAddress.unsafelyUnwrapped)
            return body(UnsafeRawBufferPointer(start: scratch.baseAddress, count: length))
        }
    }

    // MARK: Writes

    /// Checks every page write against this heap without changing it: the page is inside the heap
    /// and its diff decompresses and fits the page (`PageDiff.validate(pageSize:)`).
    package func validate(_ writes: [PageWrite]) throws(StateMachineError) {
        for write in writes {
            guard write.page < UInt64(pageCount) else {
                throw StateMachineError(
                    .invalidArgument, "page write to page \(write.page), outside the heap of \(pageCount) pages")
            }
            do {
                try write.diff.validate(pageSize: pageSize)
            } catch {
                throw StateMachineError(.invalidArgument, "the diff of page \(write.page) is invalid: \(error)")
            }
        }
    }

    /// Applies the diffs of a write, all or nothing: every diff is validated first, so a write
    /// with one bad diff changes no byte. Diffs are applied in list order (a page listed twice
    /// gets both, the later one last).
    package func apply(_ writes: [PageWrite]) throws(StateMachineError) {
        try validate(writes)
        try applyValidated(writes)
    }

    /// Applies diffs that `validate(_:)` accepted. Each diff still checks itself before it
    /// writes (`PageDiff.apply(to:)`), so a failure here is a bug, never a corrupt heap page.
    func applyValidated(_ writes: [PageWrite]) throws(StateMachineError) {
        if let writer {
            let pages = Array(Set(writes.map { Int($0.page) })).sorted()
            writer.beginChange(pages: pages)
            defer { writer.endChange() }
            for write in writes {
                let page = Int(write.page)
                touched.insert(page)
                do {
                    try write.diff.forEachRun(pageSize: pageSize) { offset, bytes in
                        writer.commit(offset: page * pageSize + offset, bytes: bytes)
                    }
                } catch {
                    throw StateMachineError(
                        .invalidArgument, "the diff of page \(write.page) failed after it validated: \(error)")
                }
            }
            return
        }
        for write in writes {
            touched.insert(Int(write.page))
            do {
                try write.diff.apply(to: pageBytes(Int(write.page)))
            } catch {
                throw StateMachineError(
                    .invalidArgument, "the diff of page \(write.page) failed after it validated: \(error)")
            }
        }
    }

    /// Writes `bytes` at `address` (for tests and tools; committed writes arrive as diffs).
    package func write(_ bytes: [UInt8], at address: UInt64) throws(StateMachineError) {
        let offset = try offset(of: address, length: UInt64(bytes.count))
        noteWritten(offset: offset, count: bytes.count)
        if writer != nil {
            bytes.withUnsafeBytes { commitThroughWriter(offset: offset, bytes: $0) }
            return
        }
        bytes.withUnsafeBytes { source in
            guard let from = source.baseAddress else { return }
            (base + offset).copyMemory(from: from, byteCount: source.count)
        }
    }

    // MARK: Atomics

    /// The outcome of `op` on the 8-byte little-endian word at `address`, without changing it:
    /// whether it succeeds, the word before, and the word after.
    package func atomicOutcome(address: UInt64, op: AtomicOp) throws(StateMachineError) -> (
        ok: Bool, old: UInt64, new: UInt64
    ) {
        let old = try word(at: address)
        switch op {
        case .compareAndSwap(let expect, let value):
            return old == expect ? (true, old, value) : (false, old, old)
        case .add(let delta):
            // Wraps, like a hardware fetch-and-add.
            return (true, old, old &+ delta)
        case .swap(let value):
            return (true, old, value)
        }
    }

    /// Performs `op` on the 8-byte little-endian word at `address` (8-aligned, inside the heap)
    /// and returns whether it succeeded (false only for a failed compare-and-swap) and the old word.
    @discardableResult
    package func atomic(address: UInt64, op: AtomicOp) throws(StateMachineError) -> (ok: Bool, old: UInt64) {
        let outcome = try atomicOutcome(address: address, op: op)
        if outcome.new != outcome.old { try store(word: outcome.new, at: address) }
        return (outcome.ok, outcome.old)
    }

    /// Stores the 8-byte word `value`, little-endian, at `address` (8-aligned, inside the heap),
    /// with one aligned store so that readers through another mapping never see half of it.
    package func store(word value: UInt64, at address: UInt64) throws(StateMachineError) {
        let offset = try wordOffset(address)
        touched.insert(offset / pageSize)
        if writer != nil {
            withUnsafeBytes(of: value.littleEndian) { commitThroughWriter(offset: offset, bytes: $0) }
            return
        }
        base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt64.self)
    }

    /// The 8-byte word, little-endian, at `address`.
    package func word(at address: UInt64) throws(StateMachineError) -> UInt64 {
        let offset = try wordOffset(address)
        guard writer != nil else { return UInt64(littleEndian: base.load(fromByteOffset: offset, as: UInt64.self)) }
        var value: UInt64 = 0
        withUnsafeMutableBytes(of: &value) { copyCommitted(offset: offset, count: 8, into: $0.baseAddress.unsafelyUnwrapped) }
        return UInt64(littleEndian: value)
    }

    private func wordOffset(_ address: UInt64) throws(StateMachineError) -> Int {
        guard address % 8 == 0 else {
            throw StateMachineError(
                .invalidArgument, "the word at 0x\(String(address, radix: 16)) is not 8-byte aligned")
        }
        // heapBase is page-aligned and base 8-aligned, so the offset keeps the word aligned.
        return try offset(of: address, length: 8)
    }

    // MARK: Zeroing

    /// Makes [address, address + length) read as zeros (a freed block, so that the next
    /// allocation of that memory reads as zeros). Only pages the image wrote are visited, and
    /// bytes already zero are only read, never written, so freeing memory that was never written
    /// costs nothing. Runs of whole pages of an owned mapping are given back to the kernel
    /// (`madvise(MADV_DONTNEED)`, after which a private anonymous mapping reads as zeros).
    package func zero(address: UInt64, length: UInt64) throws(StateMachineError) {
        let offset = try offset(of: address, length: length)
        zero(offset: offset, count: Int(length))
    }

    /// Zeroes every byte of the heap (before a restore).
    func zeroAll() {
        zero(offset: 0, count: size)
    }

    /// Records that [address, address + length) may have been written by someone other than the
    /// image (through another mapping of the same memory), so that scans look at those pages.
    package func noteWritten(address: UInt64, length: UInt64) throws(StateMachineError) {
        noteWritten(offset: try offset(of: address, length: length), count: Int(length))
    }

    private func noteWritten(offset: Int, count: Int) {
        guard count > 0 else { return }
        touched.insert(offset / pageSize..<(offset + count - 1) / pageSize + 1)
    }

    private func zero(offset: Int, count: Int) {
        guard count > 0 else { return }
        if writer != nil { return zeroThroughWriter(offset: offset, count: count) }
        let end = offset + count
        // Whole pages first collected into runs, so that an owned mapping can drop a run with
        // one madvise; partial pages at either end are cleared by stores.
        var runStart = -1
        var runEnd = -1
        func flushRun() {
            if runStart >= 0 { zeroWholePages(runStart..<runEnd) }
            runStart = -1
        }
        // Collected first: the loop below takes pages out of `touched`.
        var pages: [Int] = []
        touched.forEach(in: offset / pageSize..<(end - 1) / pageSize + 1) { pages.append($0) }
        for page in pages {
            let pageStart = page * pageSize
            let from = max(offset, pageStart)
            let to = min(end, pageStart + pageSize)
            if from == pageStart, to == pageStart + pageSize {
                if runStart >= 0, runEnd == page {
                    runEnd = page + 1
                } else {
                    flushRun()
                    runStart = page
                    runEnd = page + 1
                }
                continue
            }
            clearIfNonZero(offset: from, count: to - from)
            if isZeroPage(page) { touched.remove(page) }
        }
        flushRun()
    }

    /// Zeroes whole pages (all in `touched`) and takes them out of it.
    private func zeroWholePages(_ pages: Range<Int>) {
        let start = pages.lowerBound * pageSize
        let count = pages.count * pageSize
        let systemPage = Self.systemPageSize
        // Only worth a system call for more than a few pages, and only where the kernel's pages
        // line up with ours.
        if ownsMemory, count >= 16 * systemPage, start % systemPage == 0, count % systemPage == 0,
            madvise(base + start, count, MADV_DONTNEED) == 0
        {
            // Done: a private anonymous mapping reads as zeros after MADV_DONTNEED.
        } else {
            for page in pages { clearIfNonZero(offset: page * pageSize, count: pageSize) }
        }
        for page in pages { touched.remove(page) }
    }

    /// Clears the bytes unless they already read as zero, so that a page is never dirtied in
    /// vain.
    private func clearIfNonZero(offset: Int, count: Int) {
        let bytes = UnsafeMutableRawBufferPointer(start: base + offset, count: count)
        if !Self.isZero(UnsafeRawBufferPointer(bytes)) { bytes.initializeMemory(as: UInt8.self, repeating: 0) }
    }

    private static let systemPageSize: Int = {
        let size = sysconf(Int32(_SC_PAGESIZE))
        return size > 0 ? size : 4096
    }()

    // MARK: Non-zero pages

    /// Whether every byte of `bytes` is zero: 32 bytes per step while it can, then 8, then 1.
    static func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let start = bytes.baseAddress else { return true }
        let count = bytes.count
        var i = 0
        while i + 32 <= count {
            let any =
                start.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                | start.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)
                | start.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self)
                | start.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self)
            if any != 0 { return false }
            i += 32
        }
        while i + 8 <= count {
            if start.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
            i += 8
        }
        while i < count {
            if start.load(fromByteOffset: i, as: UInt8.self) != 0 { return false }
            i += 1
        }
        return true
    }

    /// Whether page `page` holds only zeros.
    package func isZeroPage(_ page: Int) -> Bool {
        withCommittedPage(page) { Self.isZero($0) }
    }

    /// Calls `body` with each page that holds a byte that is not zero, in page order, with its
    /// bytes (valid only inside `body`).
    package func forEachNonZeroPage<E: Error>(_ body: (Int, UnsafeRawBufferPointer) throws(E) -> Void) throws(E) {
        // Pages outside `touched` are zero: only those in it are read.
        guard writer != nil else {
            try touched.forEach(in: 0..<pageCount) { (page) throws(E) in
                let bytes = UnsafeRawBufferPointer(pageBytes(page))
                if !Self.isZero(bytes) { try body(page, bytes) }
            }
            return
        }
        // Through the writer, each page is copied while the writer holds it, so that `body` sees
        // one consistent committed page even while the application writes its own copy.
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: pageSize, alignment: 16)
        defer { scratch.deallocate() }
        let copy = UnsafeRawBufferPointer(start: scratch, count: pageSize)
        try touched.forEach(in: 0..<pageCount) { (page) throws(E) in
            copyCommitted(offset: page * pageSize, count: pageSize, into: scratch)
            if !Self.isZero(copy) { try body(page, copy) }
        }
    }

    /// The numbers of the pages that hold a byte that is not zero, in order.
    package func nonZeroPages() -> [Int] {
        var pages: [Int] = []
        forEachNonZeroPage { page, _ in pages.append(page) }
        return pages
    }

    /// The CRC-32C of the heap's content: of each non-zero page in order, its page number (u64,
    /// little-endian) followed by its bytes. It depends only on the content (zero pages
    /// contribute nothing, whether they were never written or written back to zero), so two
    /// members that applied the same entries agree on it.
    package func digest() -> UInt32 {
        var crc: UInt32 = 0
        forEachNonZeroPage { page, bytes in
            withUnsafeBytes(of: UInt64(page).littleEndian) { crc = CRC32C.checksum($0, continuing: crc) }
            crc = CRC32C.checksum(bytes, continuing: crc)
        }
        return crc
    }
}
