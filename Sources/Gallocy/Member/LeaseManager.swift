import Dispatch
import GallocyCodec
import GallocyRuntime
import GallocyStateMachine
import Logging
import Synchronization

/// The member's half of page leases (sequential memory; docs/consistency.md): it serves the
/// faults on leased pages by proposing lease requests, and gives back the leases this process
/// holds by proposing releases (the page's diff and the release in one entry):
///
/// - when another member's request waits, once the lease has been held here for
///   `minimumHold` (so that the faulting instruction that asked for it has run: two writers
///   taking a page from each other both make progress);
/// - of its own accord at half the lease, so that a live holder never loses its writes to an
///   expiry (the next write faults and asks again).
///
/// The page protections themselves follow the applied entries (`PageLeases`).
final class LeaseManager: PageLeaseDelegate, @unchecked Sendable {
    private let node: Node
    private let leases: PageLeases
    private let member: UInt64
    private let logger: Logger
    private let queue = DispatchQueue(label: "gallocy.leases")
    private let settings = Mutex<(ttlMillis: UInt64, minimumHold: Duration)>((2000, .milliseconds(2)))
    private let stopped = Atomic<Bool>(false)
    private var service: DeferredFaultService?
    /// Requests, grants waited for and releases proposed (for tests and logs).
    let requests = Atomic<Int>(0)
    let releasesProposed = Atomic<Int>(0)

    init(node: Node, leases: PageLeases, logger: Logger) {
        self.node = node
        self.leases = leases
        self.member = leases.member
        self.logger = logger
    }

    /// Starts the fault service and releases the leases held already (granted while the log was
    /// replayed at start: their writes, if any, were lost with the previous process).
    func start() throws(RuntimeError) {
        service = try DeferredFaultService { [weak self] page, isWrite in
            guard let self else { return .readOnly }
            return self.fault(page: page, isWrite: isWrite)
        }
        for held in leases.attach(self) { leaseWanted(page: held.page, grant: held.grant) }
    }

    func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        leases.detach()
        service?.stop()
    }

    var ttlMillis: UInt64 { settings.withLock { $0.ttlMillis } }

    func configure(ttl: Duration, minimumHold: Duration) {
        let millis = UInt64(max(1, ttl.components.seconds * 1000 + ttl.components.attoseconds / 1_000_000_000_000_000))
        settings.withLock { $0 = (millis, minimumHold) }
    }

    // MARK: - Faults (the fault service thread)

    private func fault(page: Int, isWrite: Bool) -> PageAccess? {
        // A page without access that is not sequential memory (a protection that could not be
        // restored) reads as it is.
        guard leases.isLeased(page: page) else { return .readOnly }
        request(page: page, write: isWrite)
        return nil
    }

    private func request(page: Int, write: Bool) {
        guard !stopped.load(ordering: .acquiring) else { return }
        requests.add(1, ordering: .relaxed)
        let body = CommandBody.leaseRequest(
            page: UInt64(page), member: member, write: write, ttlMillis: ttlMillis, now: RaftDriver.wallClockMillis())
        let retryAfter = Duration.milliseconds(Int64(max(200, ttlMillis * 2)))
        let accepted = node.driver.submit { [self] driver in
            driver.propose(body, deadline: ContinuousClock.now.advanced(by: .seconds(30))) { [self] result in
                // Applied: the apply path grants the page (or queues the request behind the
                // holder, whose release grants it). Should the threads still be parked much
                // later (a request lost with its answer), ask again: a repeated request is
                // harmless (one queue place per member).
                let delay: Duration
                if case .failure(let error) = result {
                    logger.debug("lease request failed; asking again", metadata: ["page": "\(page)", "error": "\(error)"])
                    delay = .milliseconds(100)
                } else {
                    delay = retryAfter
                }
                queue.asyncAfter(deadline: .now() + .nanoseconds(Int(delay.components.seconds) * 1_000_000_000 + Int(delay.components.attoseconds / 1_000_000_000))) {
                    [self] in
                    if CGallocyRuntimeState.isRequested(page) { request(page: page, write: write) }
                }
            }
        }
        if !accepted { logger.debug("lease request dropped: the member is stopping") }
    }

    // MARK: - Releases

    func leaseGranted(page: Int, grant: UInt64, expiresAt: UInt64) {
        let half = Int(ttlMillis / 2)
        queue.asyncAfter(deadline: .now() + .milliseconds(max(1, half))) { [self] in release(page: page, grant: grant) }
    }

    func leaseWanted(page: Int, grant: UInt64) {
        let hold = settings.withLock { $0.minimumHold }
        let since = leases.grantedAt(page: page, grant: grant).map { $0.duration(to: .now) } ?? hold
        let wait = hold - since
        if wait <= .zero {
            queue.async { [self] in release(page: page, grant: grant) }
        } else {
            let nanos = Int(wait.components.seconds) * 1_000_000_000 + Int(wait.components.attoseconds / 1_000_000_000)
            queue.asyncAfter(deadline: .now() + .nanoseconds(nanos)) { [self] in release(page: page, grant: grant) }
        }
    }

    /// Publishes the page's writes and gives the lease back, in one entry.
    private func release(page: Int, grant: UInt64) {
        guard !stopped.load(ordering: .acquiring), let diff = leases.beginRelease(page: page, grant: grant) else { return }
        releasesProposed.add(1, ordering: .relaxed)
        let body = CommandBody.leaseRelease(
            page: UInt64(page), member: member, grant: grant, diff: diff, now: RaftDriver.wallClockMillis())
        node.driver.submit { [self] driver in
            driver.propose(body, deadline: ContinuousClock.now.advanced(by: .seconds(30))) { [self] result in
                if case .failure(let error) = result {
                    // The lease will expire; these writes are then lost.
                    logger.warning("a lease release was not committed", metadata: ["page": "\(page)", "error": "\(error)"])
                }
            }
        }
    }
}

import CGallocyRuntime

enum CGallocyRuntimeState {
    static func isRequested(_ page: Int) -> Bool {
        CGallocyRuntime_page_state(page) == UInt8(CGallocyRuntime_PAGE_REQUESTED)
    }
}
