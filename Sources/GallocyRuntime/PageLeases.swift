import CGallocyRuntime
import GallocyCodec
import GallocyStateMachine
import Synchronization

/// What the member does about the leases this process holds (the runtime only keeps the pages'
/// protections; proposing releases is the member's). Called on the apply path: never block.
package protocol PageLeaseDelegate: AnyObject, Sendable {
    /// This member now holds the write lease of `page`, granted by entry `grant`, until
    /// `expiresAt` (leader milliseconds): release it before it runs out.
    func leaseGranted(page: Int, grant: UInt64, expiresAt: UInt64)
    /// A request waits for `page`, which this member holds under `grant`: release it.
    func leaseWanted(page: Int, grant: UInt64)
}

/// The runtime half of page leases (sequential memory): the `PageLeaseObserver` of the member's
/// heap image. It turns the lease effects of each applied entry into page protections and keeps
/// the leases this process holds (docs/runtime.md, "Page leases"):
///
/// - a page granted to this member becomes writable, its twin taken from the committed bytes
///   when the grant applies; granted to another member, it gets no access here; with no holder
///   it is read-only everywhere;
/// - `beginRelease(page:grant:)` write-protects a held page and diffs it against its twin: the
///   diff goes into the release entry, which publishes it and passes the lease on;
/// - a lease that ended without its release (expired, or freed) loses its unpublished writes:
///   the page goes back to its twin, the committed bytes.
///
/// `@unchecked Sendable`: the effects come from the apply path (one thread), releases from the
/// member's lease thread; the book is behind a `Mutex` and the pages are arbitrated by the C
/// runtime's per-page states.
package final class PageLeases: PageLeaseObserver, @unchecked Sendable {
    package let mapping: HeapMapping
    /// This member's id: effects whose holder it is concern this process.
    package let member: UInt64
    private let book = Mutex(Book())
    private let clock = ContinuousClock()

    /// A lease this process holds.
    package struct Tenure: Sendable {
        package var grant: UInt64
        package var expiresAt: UInt64
        /// When the grant applied here.
        package var grantedAt: ContinuousClock.Instant
        /// `beginRelease` took its diff: the page is read-only here until the release applies.
        package var releasing: Bool
    }

    private struct Book: @unchecked Sendable {
        var tenures: [Int: Tenure] = [:]
        var sequential: Set<Int> = []
        var delegate: (any PageLeaseDelegate)?
        var counters = Counters()
    }

    package struct Counters: Sendable, Equatable {
        /// Write leases granted to this member, releases it took, leases it lost unpublished.
        package var grants = 0
        package var releases = 0
        package var discarded = 0

        package init() {}
    }

    package init(mapping: HeapMapping, member: UInt64) {
        self.mapping = mapping
        self.member = member
    }

    package var counters: Counters { book.withLock { $0.counters } }

    /// Whether `page` is sequential memory here.
    package func isLeased(page: Int) -> Bool { CGallocyRuntime_lease_mode(page) != 0 }

    /// The leases this process holds now.
    package var tenures: [Int: Tenure] { book.withLock { $0.tenures } }

    /// Sets the delegate and returns the leases held now (granted while none was set, as when the
    /// log is replayed at start): the delegate should release them.
    package func attach(_ delegate: any PageLeaseDelegate) -> [(page: Int, grant: UInt64)] {
        book.withLock { book in
            book.delegate = delegate
            return book.tenures.filter { !$0.value.releasing }.map { ($0.key, $0.value.grant) }.sorted { $0.page < $1.page }
        }
    }

    package func detach() { book.withLock { $0.delegate = nil } }

    // MARK: - The apply path

    package func applyLeaseEffects(_ effects: [LeaseEffect]) {
        var calls: [(any PageLeaseDelegate, Bool, Int, UInt64, UInt64)] = []
        for effect in effects {
            switch effect {
            case .reset:
                let (held, sequential) = book.withLock { book in
                    let held = book.tenures
                    let sequential = book.sequential
                    book.tenures = [:]
                    book.sequential = []
                    return (held, sequential)
                }
                for page in held.keys.sorted() { discard(page) }
                for page in sequential.sorted() {
                    _ = CGallocyRuntime_lease_mode_set(page, 0)
                    _ = CGallocyRuntime_page_set(page, PageAccess.readOnly.rawValue)
                }
            case .sequential(let pages):
                for page in Int(pages.lowerBound)...Int(pages.upperBound) {
                    _ = CGallocyRuntime_lease_mode_set(page, 1)
                }
                book.withLock { book in
                    for page in Int(pages.lowerBound)...Int(pages.upperBound) { book.sequential.insert(page) }
                }
            case .releaseMode(let page, _, _):
                let page = Int(page)
                let held = book.withLock { book in
                    book.sequential.remove(page)
                    return book.tenures.removeValue(forKey: page) != nil
                }
                if held { discard(page) }
                _ = CGallocyRuntime_lease_mode_set(page, 0)
                _ = CGallocyRuntime_page_set(page, PageAccess.readOnly.rawValue)
            case .ended(let page, let holder, let grant, let published):
                guard holder == member else { continue }
                let page = Int(page)
                let held = book.withLock { book -> Bool in
                    guard let tenure = book.tenures[page], tenure.grant == grant else { return false }
                    book.tenures[page] = nil
                    return true
                }
                if held && !published { discard(page) }
            case .granted(let page, let holder, let grant, let expiresAt):
                let page = Int(page)
                guard holder == member else {
                    _ = CGallocyRuntime_page_set(page, PageAccess.none.rawValue)
                    continue
                }
                // Nobody writes the page now (no member has it writable; only the apply path
                // writes the alias), so its committed bytes are the twin.
                mapping.twinPage(page).copyMemory(from: mapping.aliasPage(page), byteCount: mapping.pageSize)
                let delegate = book.withLock { book in
                    book.tenures[page] = Tenure(grant: grant, expiresAt: expiresAt, grantedAt: clock.now, releasing: false)
                    book.counters.grants += 1
                    return book.delegate
                }
                _ = CGallocyRuntime_page_set(page, PageAccess.readWrite.rawValue)
                if let delegate { calls.append((delegate, true, page, grant, expiresAt)) }
            case .shared(let page):
                _ = CGallocyRuntime_page_set(Int(page), PageAccess.readOnly.rawValue)
            case .requested(let page, let holder, let grant, _):
                guard holder == member, let delegate = book.withLock({ $0.delegate }) else { continue }
                calls.append((delegate, false, Int(page), grant, 0))
            }
        }
        for (delegate, granted, page, grant, expiresAt) in calls {
            if granted {
                delegate.leaseGranted(page: page, grant: grant, expiresAt: expiresAt)
            } else {
                delegate.leaseWanted(page: page, grant: grant)
            }
        }
    }

    /// Puts a held page back to its committed bytes (its twin): the lease ended unpublished.
    private func discard(_ page: Int) {
        var hidden: Int32 = 0
        let previous = CGallocyRuntime_hold_begin(page, 1, &hidden)
        mapping.aliasPage(page).copyMemory(from: mapping.twinPage(page), byteCount: mapping.pageSize)
        _ = CGallocyRuntime_hold_end(page, previous, hidden)
        CGallocyRuntime_wake_parked()
        book.withLock { $0.counters.discarded += 1 }
    }

    // MARK: - Releases (the member's lease thread)

    /// When the lease `grant` of `page` applied here, if this process still holds it.
    package func grantedAt(page: Int, grant: UInt64) -> ContinuousClock.Instant? {
        book.withLock { book in book.tenures[page].flatMap { $0.grant == grant ? $0.grantedAt : nil } }
    }

    /// Starts the release of the lease `grant` of `page`: write-protects the page (writers fault
    /// and ask again, behind the queue) and returns its diff against the twin, for the release
    /// entry. Nil if this process does not hold that lease, or is releasing it already.
    package func beginRelease(page: Int, grant: UInt64) -> PageDiff? {
        let mine = book.withLock { book -> Bool in
            guard var tenure = book.tenures[page], tenure.grant == grant, !tenure.releasing else { return false }
            tenure.releasing = true
            book.tenures[page] = tenure
            book.counters.releases += 1
            return true
        }
        guard mine else { return nil }
        // Held and not released: the page is writable here or held for a moment by the apply
        // path; `collect_begin` waits that out.
        let state = CGallocyRuntime_page_state(page)
        guard state != UInt8(CGallocyRuntime_PAGE_NONE), state != UInt8(CGallocyRuntime_PAGE_REQUESTED) else {
            return nil
        }
        var previous: UInt8 = 0
        guard CGallocyRuntime_collect_begin(page, &previous) == 0 else { return nil }
        let diff = PageDiff.make(
            twin: UnsafeRawBufferPointer(start: mapping.twinPage(page), count: mapping.pageSize),
            page: UnsafeRawBufferPointer(start: mapping.aliasPage(page), count: mapping.pageSize))
        CGallocyRuntime_collect_end(page, previous)
        return diff
    }
}

/// The fault service of a member with sequential memory: like `FaultService`, but `serve` may
/// answer nil, leaving the faulting threads parked until the apply path grants the page (a lease
/// request is a committed entry).
package final class DeferredFaultService {
    private var thread: OSThread?

    package init(serve: @escaping @Sendable (_ page: Int, _ isWrite: Bool) -> PageAccess?) throws(RuntimeError) {
        CGallocyRuntime_service_reset()
        thread = try OSThread {
            var page = 0
            var isWrite: Int32 = 0
            while CGallocyRuntime_service_next(&page, &isWrite) == 0 {
                if let access = serve(page, isWrite != 0) {
                    _ = CGallocyRuntime_service_grant(page, access.rawValue)
                }
            }
        }
    }

    package func stop() {
        guard let thread else { return }
        CGallocyRuntime_service_stop()
        thread.join()
        self.thread = nil
    }

    deinit { stop() }
}
