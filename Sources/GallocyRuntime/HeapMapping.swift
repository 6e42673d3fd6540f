import CGallocyRuntime
import GallocyCodec

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The heap's memory in one process: a memfd mapped twice, and a twin area.
///
/// - The **view** is mapped at a fixed base address (`MAP_FIXED_NOREPLACE`: never over an existing
///   mapping). The application reads and writes it; its per-page protections drive the faults.
/// - The **alias** is mapped wherever the kernel likes, always writable. Committed data is written
///   through it, and the runtime's own I/O reads from it, so nothing the runtime does ever touches
///   a protected page. `alias` is the region to hand to `HeapImage(base:settings:)`.
/// - The **twin area** (anonymous, `MAP_NORESERVE`, same size) holds, for each dirty page at the
///   same offset, its contents before the first write since the last release.
///
/// One heap per process is registered with the fault handler (the handler's state is global).
/// Not `Sendable`: one owner drives release and apply; the handler and the fault service touch
/// the shared state only through the C runtime's atomics.
package final class HeapMapping {
    /// The application view, at the fixed base.
    package let view: UnsafeMutableRawPointer
    /// The always-writable alias of the same memory.
    package let alias: UnsafeMutableRawPointer
    /// The twin area: page `i`'s twin is at `twin + i * pageSize`.
    package let twin: UnsafeMutableRawPointer
    /// The heap's size in bytes, a multiple of `pageSize`.
    package let size: Int
    /// The heap's page size: a multiple of the system page size.
    package let pageSize: Int
    /// `size / pageSize`.
    package var pageCount: Int { size / pageSize }
    private let fd: Int32
    private var closed = false

    /// Creates the memfd, maps the view at `base` and the alias, maps the twin area and registers
    /// the region with the fault handler (installing it if needed). Every page starts with
    /// `initialAccess` (`.none` or `.readOnly`). Throws `.baseInUse` when the range at `base` is
    /// already mapped, `.invalidArgument` when it is not page-aligned or not inside user space.
    package init(
        base: UInt = SharedHeap.defaultBase, size: Int, pageSize: Int = SharedHeap.systemPageSize,
        initialAccess: PageAccess = .readOnly, mode: CoherenceMode = .release
    ) throws(RuntimeError) {
        try Self.check(base: base, size: size, pageSize: pageSize)
        guard initialAccess != .readWrite else {
            throw RuntimeError(.invalidArgument, "a heap starts read-only or without access, not writable")
        }
        let fd = CGallocyRuntime_memfd_create("gallocy-heap", size)
        guard fd >= 0 else {
            throw RuntimeError(.system, "memfd_create/ftruncate of \(size) bytes failed: \(Self.describe(-fd))")
        }
        var error: Int32 = 0
        guard let view = CGallocyRuntime_map_view(UnsafeMutableRawPointer(bitPattern: base), size, fd, 0, &error)
        else {
            Glibc.close(fd)
            if error == EEXIST {
                throw RuntimeError(
                    .baseInUse,
                    "heap base 0x\(String(base, radix: 16)) is in use in this process: some mapping overlaps [0x\(String(base, radix: 16)), 0x\(String(base + UInt(size), radix: 16))); choose another heap base"
                )
            }
            throw RuntimeError(
                .system, "mmap of the heap view at 0x\(String(base, radix: 16)) failed: \(Self.describe(error))")
        }
        guard let alias = CGallocyRuntime_map_alias(size, fd, &error) else {
            _ = CGallocyRuntime_unmap(view, size)
            Glibc.close(fd)
            throw RuntimeError(.system, "mmap of the heap alias failed: \(Self.describe(error))")
        }
        guard let twin = CGallocyRuntime_map_anonymous(size, &error) else {
            _ = CGallocyRuntime_unmap(view, size)
            _ = CGallocyRuntime_unmap(alias, size)
            Glibc.close(fd)
            throw RuntimeError(.system, "mmap of the twin area failed: \(Self.describe(error))")
        }
        func undo() {
            _ = CGallocyRuntime_unmap(view, size)
            _ = CGallocyRuntime_unmap(alias, size)
            _ = CGallocyRuntime_unmap(twin, size)
            Glibc.close(fd)
        }
        // The view was mapped PROT_NONE; open it to the initial access before faults can happen.
        if initialAccess == .readOnly {
            let result = CGallocyRuntime_protect(view, size, PageAccess.readOnly.rawValue)
            guard result == 0 else {
                undo()
                throw RuntimeError(.system, "mprotect of the heap view failed: \(Self.describe(result))")
            }
        }
        let installResult = CGallocyRuntime_install()
        guard installResult == 0 else {
            undo()
            throw RuntimeError(.system, "sigaction for the fault handler failed: \(Self.describe(installResult))")
        }
        _ = CGallocyRuntime_thread_prepare()
        let registered = CGallocyRuntime_region_register(
            view, size, pageSize, twin, initialAccess.rawValue, mode.rawValue)
        guard registered == 0 else {
            undo()
            if registered == EBUSY {
                throw RuntimeError(.heapAlreadyRegistered, "another heap is registered in this process; close it first")
            }
            throw RuntimeError(
                .system, "registering the heap with the fault handler failed: \(Self.describe(registered))")
        }
        self.view = view
        self.alias = alias
        self.twin = twin
        self.size = size
        self.pageSize = pageSize
        self.fd = fd
    }

    /// Checks that `[base, base + size)` can hold a heap: page-aligned, inside user space, pages a
    /// multiple of the system page size. Whether the range is free is checked by mapping it.
    package static func check(base: UInt, size: Int, pageSize: Int) throws(RuntimeError) {
        let system = SharedHeap.systemPageSize
        guard pageSize >= system, pageSize % system == 0, pageSize <= PageDiff.maxPageSize else {
            throw RuntimeError(
                .invalidArgument,
                "heap page size \(pageSize) must be a multiple of the system page size \(system), at most \(PageDiff.maxPageSize)"
            )
        }
        guard size > 0, size % pageSize == 0 else {
            throw RuntimeError(
                .invalidArgument, "heap size \(size) must be a positive multiple of the page size \(pageSize)")
        }
        guard base % UInt(pageSize) == 0 else {
            throw RuntimeError(
                .invalidArgument, "heap base 0x\(String(base, radix: 16)) is not aligned to the page size \(pageSize)")
        }
        let (end, overflow) = base.addingReportingOverflow(UInt(size))
        guard base >= 1 << 32, !overflow, end <= SharedHeap.userSpaceEnd else {
            throw RuntimeError(
                .invalidArgument,
                "heap [0x\(String(base, radix: 16)), +\(size)) is not inside user space [0x100000000, 0x\(String(SharedHeap.userSpaceEnd, radix: 16)))"
            )
        }
    }

    /// Unregisters the region from the fault handler and unmaps everything. Idempotent. No thread
    /// may touch the view after this begins.
    package func close() {
        guard !closed else { return }
        closed = true
        CGallocyRuntime_region_unregister()
        _ = CGallocyRuntime_unmap(view, size)
        _ = CGallocyRuntime_unmap(alias, size)
        _ = CGallocyRuntime_unmap(twin, size)
        Glibc.close(fd)
    }

    deinit { close() }

    // MARK: - Pages

    /// Page `page` of the view.
    package func viewPage(_ page: Int) -> UnsafeMutableRawPointer { view + page * pageSize }
    /// Page `page` of the alias.
    package func aliasPage(_ page: Int) -> UnsafeMutableRawPointer { alias + page * pageSize }
    /// The twin of page `page`.
    package func twinPage(_ page: Int) -> UnsafeMutableRawPointer { twin + page * pageSize }

    /// The page's state in the fault handler (transient states read as the stable one they guard
    /// only after they end; this is a snapshot).
    package func state(ofPage page: Int) -> UInt8 {
        precondition(page >= 0 && page < pageCount, "page \(page) outside the heap")
        return CGallocyRuntime_page_state(page)
    }

    /// The page's stable access, or nil while a transient state holds it.
    package func access(ofPage page: Int) -> PageAccess? { PageAccess(rawValue: state(ofPage: page)) }

    /// Sets the view's protection of a page (and its state), waiting while another party holds it,
    /// and wakes threads parked on it. Making a page writable this way takes no twin: in the
    /// release mode use it for `.none` and `.readOnly` only.
    package func setAccess(_ access: PageAccess, page: Int) throws(RuntimeError) {
        precondition(page >= 0 && page < pageCount, "page \(page) outside the heap")
        let result = CGallocyRuntime_page_set(page, access.rawValue)
        guard result == 0 else {
            throw RuntimeError(.system, MappingLimit.protectFailure(page: page, error: result))
        }
    }

    /// Sets the access of every page in `pages`.
    package func setAccess(_ access: PageAccess, pages: Range<Int>) throws(RuntimeError) {
        for page in pages { try setAccess(access, page: page) }
    }

    // MARK: - Release and apply

    /// A dirty page taken out of the dirty set, with its changes since its twin was made.
    package struct DirtyPage: Sendable, Equatable {
        package var page: Int
        package var diff: PageDiff
    }

    /// How many pages are dirty now.
    package var dirtyCount: Int { CGallocyRuntime_dirty_count() }

    /// The release path (DESIGN "How a write flows", step 2, before proposing): write-protects
    /// every dirty page, diffs it against its twin and empties the dirty set. Writers that race
    /// with it fault and retry until their page is read-only again, then dirty it anew. Pages come
    /// in ascending order.
    package func collectDirty() -> [DirtyPage] {
        var result: [DirtyPage] = []
        collectDirty { page, _, diff in result.append(DirtyPage(page: page, diff: diff)) }
        return result
    }

    /// `collectDirty()`, calling `each` with every page's number, twin and diff while the page is
    /// still held (COLLECTING: no committed entry is applied to it and no writer takes a new twin
    /// until `each` returns). Pages come in ascending order.
    package func collectDirty(_ each: (_ page: Int, _ twin: UnsafeRawPointer, _ diff: PageDiff) -> Void) {
        var taken: [Int] = []
        var buffer = [Int](repeating: 0, count: 256)
        while true {
            let count = buffer.withUnsafeMutableBufferPointer { CGallocyRuntime_dirty_take($0.baseAddress, $0.count) }
            if count == 0 { break }
            taken.append(contentsOf: buffer[0..<count])
        }
        taken.sort()
        for page in taken {
            var previous: UInt8 = 0
            // A failed mprotect leaves the page writable and dirty-less; put it back in the set
            // so that the next release takes it.
            guard CGallocyRuntime_collect_begin(page, &previous) == 0 else {
                CGallocyRuntime_dirty_restore(page)
                continue
            }
            let diff = PageDiff.make(
                twin: UnsafeRawBufferPointer(start: twinPage(page), count: pageSize),
                page: UnsafeRawBufferPointer(start: aliasPage(page), count: pageSize))
            each(page, UnsafeRawPointer(twinPage(page)), diff)
            CGallocyRuntime_collect_end(page, previous)
        }
    }

    /// Applies a committed diff to a page: through the alias, and into the page's twin if the page
    /// is dirty here, so that local uncommitted writes to other bytes survive (the next release
    /// diffs against a twin that already has the committed bytes).
    package func applyCommitted(page: Int, diff: PageDiff) throws(RuntimeError) {
        precondition(page >= 0 && page < pageCount, "page \(page) outside the heap")
        let previous = CGallocyRuntime_apply_begin(page)
        defer { CGallocyRuntime_apply_end(page, previous) }
        do {
            try diff.apply(to: UnsafeMutableRawBufferPointer(start: aliasPage(page), count: pageSize))
            if previous == PageAccess.readWrite.rawValue {
                try diff.apply(to: UnsafeMutableRawBufferPointer(start: twinPage(page), count: pageSize))
            }
        } catch {
            throw RuntimeError(.badDiff, "the committed diff for heap page \(page) does not apply: \(error)")
        }
    }

    // MARK: - I/O

    /// Writes heap bytes `range` (offsets into the heap) to a file descriptor, reading them
    /// through the alias: the kernel must never be handed a protected view page (it would fail
    /// with EFAULT instead of faulting). Retries interrupted and partial writes.
    package func write(range: Range<Int>, toFileDescriptor target: Int32) throws(RuntimeError) {
        precondition(range.lowerBound >= 0 && range.upperBound <= size, "range \(range) outside the heap")
        var offset = range.lowerBound
        while offset < range.upperBound {
            let written = Glibc.write(target, alias + offset, range.upperBound - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw RuntimeError(.system, "write of heap bytes failed: \(Self.describe(errno))")
            }
            offset += written
        }
    }

    static func describe(_ error: Int32) -> String {
        "\(String(cString: strerror(error))) (errno \(error))"
    }
}
