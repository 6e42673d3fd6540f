import CGallocyRuntime
import GallocyCodec
import GallocyStateMachine
import Synchronization

/// The shared heap of a process that runs the application: the mappings (`HeapMapping`), the
/// state machine's view of them (it is the `HeapImageWriter` of the member's `HeapImage`), and the
/// releases in flight.
///
/// Two parties change the heap's memory:
///
/// - **the application**, through the view: its first write to a page takes a twin (the fault
///   handler), and a release (`beginRelease()`) diffs its dirty pages into one proposal;
/// - **the apply path** (the member's driver thread), through the alias: every committed entry.
///
/// The rules that keep them apart (docs/consistency.md):
///
/// 1. The pages of one committed entry change together: `beginChange(pages:)` holds every page
///    (APPLYING) and hides the readable ones (no access) until `endChange()`; application threads
///    that touch them park in the handler and retry once the entry is written.
/// 2. A committed byte never undoes a local uncommitted one: a committed byte goes into the
///    page only where the application has not changed it, that is where the page equals its
///    base (the twin of a dirty page, else the copy kept by the newest release in flight on the
///    page), and always into the base and the copies. The local value is published by a release
///    later in the log, so every member ends with it.
/// 3. A release whose entry is rejected (its lock's lease expired) publishes nothing and its bytes
///    go back to their committed values here too: each release keeps the committed contents of
///    its pages (a copy of the twins, kept up to date by rule 2) until its entry is applied, and a
///    rejected one is undone by committing those contents back over its runs.
///
/// The committed contents of a page (what snapshots, digests and linearizable reads report) are
/// the oldest in-flight release's copy if there is one, else the twin if the page is dirty, else
/// the page itself.
///
/// `@unchecked Sendable`: the change state is touched only by the apply path (one thread at a
/// time), the releases book is behind a `Mutex`, and the pages themselves are arbitrated by the C
/// runtime's per-page states.
package final class RuntimeHeap: HeapImageWriter, @unchecked Sendable {
    package let mapping: HeapMapping
    private let pageSize: Int
    /// Whether changes hide their pages from the application while they are written (always, but
    /// for a benchmark that measures what hiding costs).
    package let hidesChanges: Bool

    /// The pages held by the current change, with their state before.
    private var held: [Int: UInt8] = [:]
    /// The runs of contiguous pages the current change hid, with their state before: each gets
    /// its protection back with one mprotect at the end.
    private var hiddenRuns: [(first: Int, count: Int, previous: UInt8)] = []

    private let book = Mutex(ReleaseBook())
    private let counters = Mutex(Counters())

    package struct Counters: Sendable, Equatable {
        /// Releases proposed (with at least one changed page), accepted and undone.
        package var releases = 0
        package var accepted = 0
        package var undone = 0
        /// Releases given up without an outcome, their pages put back in the dirty set.
        package var abandoned = 0
        /// Changes (committed entries, or parts of a restore) written through the writer.
        package var changes = 0
        /// Pages held and hidden by changes.
        package var pagesHeld = 0
        package var pagesHidden = 0
    }

    package init(mapping: HeapMapping, hidesChanges: Bool = true) {
        self.mapping = mapping
        self.pageSize = mapping.pageSize
        self.hidesChanges = hidesChanges
    }

    package var counterValues: Counters { counters.withLock { $0 } }

    // MARK: - The writer (the apply path)

    package func beginChange(pages: [Int]) {
        precondition(held.isEmpty, "a heap change began inside another")
        for page in pages where held[page] == nil {
            var ignored: Int32 = 0
            held[page] = CGallocyRuntime_hold_begin(page, 0, &ignored)
        }
        var hiddenCount = 0
        if hidesChanges {
            // Readable pages are hidden in runs of contiguous pages: one mprotect a run. Even a
            // failed attempt may have hidden some pages of the run (page by page, out of memory
            // mappings): every run tried gets its protection back at the end.
            hiddenRuns = readableRuns()
            for run in hiddenRuns
            where CGallocyRuntime_hold_protect_run(run.first, run.count, PageAccess.none.rawValue) == 0 {
                hiddenCount += run.count
            }
        }
        counters.withLock {
            $0.changes += 1
            $0.pagesHeld += held.count
            $0.pagesHidden += hiddenCount
        }
    }

    /// The runs of contiguous held pages that were readable before (READ_ONLY or WRITABLE, the
    /// same for the whole run), in ascending order.
    private func readableRuns() -> [(first: Int, count: Int, previous: UInt8)] {
        let readable = held.filter {
            $0.value == PageAccess.readOnly.rawValue || $0.value == PageAccess.readWrite.rawValue
        }.keys.sorted()
        var runs: [(first: Int, count: Int, previous: UInt8)] = []
        for page in readable {
            let previous = held[page].unsafelyUnwrapped
            if let last = runs.last, last.first + last.count == page, last.previous == previous {
                runs[runs.count - 1].count += 1
            } else {
                runs.append((page, 1, previous))
            }
        }
        return runs
    }

    package func commit(offset: Int, bytes: UnsafeRawBufferPointer) {
        let page = offset / pageSize
        let within = offset - page * pageSize
        precondition(within + bytes.count <= pageSize, "a commit crosses a page boundary")
        guard let previous = held[page] else { preconditionFailure("commit to page \(page), which the change does not hold") }
        let source = bytes.baseAddress.unsafelyUnwrapped
        let alias = mapping.aliasPage(page) + within
        book.withLock { book in
            let records = book.byPage[page] ?? []
            // The page as it was before the application's newest local writes: the twin of a
            // dirty page, else the newest in-flight release's copy (its bytes differ from the
            // page exactly where that release wrote). Bytes equal to it are not local.
            let base: UnsafeMutableRawPointer? =
                previous == PageAccess.readWrite.rawValue
                ? mapping.twinPage(page) : records.last?.committed[page]
            if let base {
                Self.commitToDirtyPage(alias: alias, twin: base + within, new: source, count: bytes.count)
            } else {
                alias.copyMemory(from: source, byteCount: bytes.count)
            }
            for record in records {
                record.committed[page].unsafelyUnwrapped.advanced(by: within).copyMemory(from: source, byteCount: bytes.count)
            }
        }
    }

    package func endChange() {
        // Hidden runs get their protection back with one mprotect a run; a run that cannot
        // (out of memory mappings even after making room) leaves its pages NONE, which the
        // state must then say.
        for run in hiddenRuns where CGallocyRuntime_hold_protect_run(run.first, run.count, run.previous) != 0 {
            for page in run.first..<run.first + run.count { held[page] = PageAccess.none.rawValue }
        }
        for (page, previous) in held { _ = CGallocyRuntime_hold_end(page, previous, 0) }
        held.removeAll(keepingCapacity: true)
        hiddenRuns.removeAll(keepingCapacity: true)
        CGallocyRuntime_wake_parked()
    }

    package func withCommittedPage(_ page: Int, _ body: (UnsafeRawBufferPointer) -> Void) {
        // Inside a change the page may be held already: then it stays held.
        var previous: UInt8
        var ownHold = false
        var hidden: Int32 = 0
        if let heldPrevious = held[page] {
            previous = heldPrevious
        } else {
            previous = CGallocyRuntime_hold_begin(page, 0, &hidden)
            ownHold = true
        }
        defer {
            if ownHold {
                _ = CGallocyRuntime_hold_end(page, previous, hidden)
                CGallocyRuntime_wake_parked()
            }
        }
        let pending: UnsafeMutableRawPointer? = book.withLock { $0.byPage[page]?.first?.committed[page] }
        if let pending {
            body(UnsafeRawBufferPointer(start: pending, count: pageSize))
        } else if previous == PageAccess.readWrite.rawValue {
            body(UnsafeRawBufferPointer(start: mapping.twinPage(page), count: pageSize))
        } else {
            body(UnsafeRawBufferPointer(start: mapping.aliasPage(page), count: pageSize))
        }
    }

    /// Rule 2 for `count` bytes of a dirty page: each committed byte goes into the twin, and into
    /// the page where the page still equals the twin (the application has not changed it).
    /// Eight bytes at a time where the whole word is untouched.
    static func commitToDirtyPage(
        alias: UnsafeMutableRawPointer, twin: UnsafeMutableRawPointer, new: UnsafeRawPointer, count: Int
    ) {
        var i = 0
        while i + 8 <= count {
            let a = alias.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            let t = twin.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            let n = new.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            if a == t {
                alias.storeBytes(of: n, toByteOffset: i, as: UInt64.self)
            } else {
                for k in i..<i + 8 where alias.load(fromByteOffset: k, as: UInt8.self) == twin.load(fromByteOffset: k, as: UInt8.self) {
                    alias.storeBytes(of: new.load(fromByteOffset: k, as: UInt8.self), toByteOffset: k, as: UInt8.self)
                }
            }
            twin.storeBytes(of: n, toByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < count {
            let n = new.load(fromByteOffset: i, as: UInt8.self)
            if alias.load(fromByteOffset: i, as: UInt8.self) == twin.load(fromByteOffset: i, as: UInt8.self) {
                alias.storeBytes(of: n, toByteOffset: i, as: UInt8.self)
            }
            twin.storeBytes(of: n, toByteOffset: i, as: UInt8.self)
            i += 1
        }
    }

    // MARK: - Releases (application threads)

    /// A release taken out of the dirty set, to be proposed as one write entry.
    package struct Release: Sendable {
        /// Identifies the release to `finishRelease(_:accepted:)`.
        package let id: UInt64
        /// One diff per changed page, in page order.
        package let writes: [PageWrite]
    }

    /// Takes every dirty page of the process (DESIGN "How a write flows", step 2): write-protects
    /// it, diffs it against its twin, and keeps a copy of the twin (its committed contents) until
    /// the release is finished. Returns nil when no page changed. Pages dirtied while this runs
    /// belong to the next release.
    package func beginRelease() -> Release? {
        let record = ReleaseRecord(id: book.withLock { book in
            book.nextID += 1
            return book.nextID
        })
        var writes: [PageWrite] = []
        mapping.collectDirty { page, twin, diff in
            // The page is COLLECTING here, so no committed entry is applied to it meanwhile:
            // registering the copy now means every later one updates it.
            guard diff.rawLength > 0 else { return }
            let copy = UnsafeMutableRawPointer.allocate(byteCount: pageSize, alignment: 16)
            copy.copyMemory(from: twin, byteCount: pageSize)
            book.withLock { book in
                record.committed[page] = copy
                book.byPage[page, default: []].append(record)
            }
            writes.append(PageWrite(page: UInt64(page), diff: diff))
        }
        guard !writes.isEmpty else { return nil }
        record.writes = writes
        book.withLock { $0.records[record.id] = record }
        counters.withLock { $0.releases += 1 }
        return Release(id: record.id, writes: writes)
    }

    /// Ends release `id` once its entry applied here: `accepted` drops its copies; a rejected
    /// release is undone (rule 3). Must run on the apply path right after that entry, before the
    /// next one.
    package func finishRelease(_ id: UInt64, accepted: Bool) {
        guard let record = takeRecord(id) else { return }
        defer { record.deallocate() }
        counters.withLock { accepted ? ($0.accepted += 1) : ($0.undone += 1) }
        guard !accepted else { return }
        let pages = record.writes.map { Int($0.page) }
        beginChange(pages: pages)
        defer { endChange() }
        for write in record.writes {
            let page = Int(write.page)
            let committed = UnsafeRawPointer(record.committed[page].unsafelyUnwrapped)
            // Made here from two pages of `pageSize` bytes: it always decodes.
            try? write.diff.forEachRun(pageSize: pageSize) { offset, bytes in
                commit(
                    offset: page * pageSize + offset,
                    bytes: UnsafeRawBufferPointer(start: committed + offset, count: bytes.count))
            }
        }
    }

    /// Gives up release `id` without knowing whether its entry committed (the proposal failed:
    /// the member stops, or caught up by snapshot): its pages go back into the dirty set, with
    /// their committed contents as twins, so that the next release publishes its bytes again
    /// (harmless if they did commit: the same bytes). Nothing the application wrote is lost.
    package func abandonRelease(_ id: UInt64) {
        guard let record = takeRecord(id) else { return }
        defer { record.deallocate() }
        for write in record.writes {
            let page = Int(write.page)
            let committed = UnsafeRawPointer(record.committed[page].unsafelyUnwrapped)
            var ignored: Int32 = 0
            let previous = CGallocyRuntime_hold_begin(page, 0, &ignored)
            var after = previous
            if previous == PageAccess.readWrite.rawValue {
                // Dirty again since the collection: the twin has this release's bytes as its
                // base; put the committed bytes back under the release's runs, so the next diff
                // carries them (or whatever the application wrote there since).
                let twin = mapping.twinPage(page)
                try? write.diff.forEachRun(pageSize: pageSize) { offset, bytes in
                    (twin + offset).copyMemory(from: committed + offset, byteCount: bytes.count)
                }
            } else if previous == PageAccess.readOnly.rawValue {
                mapping.twinPage(page).copyMemory(from: committed, byteCount: pageSize)
                if CGallocyRuntime_hold_make_dirty(page) == 0 { after = PageAccess.readWrite.rawValue }
            }
            _ = CGallocyRuntime_hold_end(page, after, 0)
        }
        CGallocyRuntime_wake_parked()
        counters.withLock { $0.abandoned += 1 }
    }

    private func takeRecord(_ id: UInt64) -> ReleaseRecord? {
        book.withLock { book -> ReleaseRecord? in
            guard let record = book.records.removeValue(forKey: id) else { return nil }
            for page in record.committed.keys {
                book.byPage[page]?.removeAll { $0 === record }
                if book.byPage[page]?.isEmpty == true { book.byPage[page] = nil }
            }
            return record
        }
    }

    /// Releases whose entries have not applied yet.
    package var releasesInFlight: Int { book.withLock { $0.records.count } }
}

/// A release in flight: its writes and the committed contents of its pages.
private final class ReleaseRecord {
    let id: UInt64
    var writes: [PageWrite] = []
    var committed: [Int: UnsafeMutableRawPointer] = [:]

    init(id: UInt64) { self.id = id }

    func deallocate() {
        for pointer in committed.values { pointer.deallocate() }
        committed = [:]
    }
}

/// The releases in flight, by id and by page (oldest first).
private struct ReleaseBook: @unchecked Sendable {
    var nextID: UInt64 = 0
    var records: [UInt64: ReleaseRecord] = [:]
    var byPage: [Int: [ReleaseRecord]] = [:]
}
