import CGallocyRuntime
import GallocyCodec
import GallocyRaft
import GallocyRuntime
import GallocyStateMachine
import Logging
import Synchronization

/// A member of a Gallocy cluster running inside this process, with the shared heap mapped at the
/// cluster's heap base: the application reads and writes heap memory directly, through plain
/// pointers, and publishes its writes with `unlock`, `barrier` or `commit` (release consistency;
/// docs/consistency.md says what a program may rely on).
///
/// It is the same engine as `gallocy node`, started with the same options: it keeps the Raft log
/// in its data directory, talks to its peers and serves the HTTP API. A process killed at any
/// instant and started again with the same options finds the heap as the cluster committed it,
/// and reaches its data again through named roots (`root(named:)`).
///
/// ```swift
/// let member = try await Member.start(options)
/// let counter = try await member.root(named: "counter", orCreate: 8)
///     .assumingMemoryBound(to: UInt64.self)
/// let lock = try await member.lock("counter")
/// counter.pointee += 1                  // a plain store into shared memory
/// try await member.unlock(lock)         // publishes it: one Raft entry with the page's diff
/// ```
///
/// One member per process (the fault handler and the heap's mapping are per process). Threads
/// that touch the heap should call `Member.prepareThread()` once (the member's own calls do).
public final class Member: Sendable {
    package let node: Node
    private let heapBox: HeapBox
    /// This member's id.
    public let id: UInt64
    /// The cluster's heap settings.
    package let settings: ClusterSettings
    private let runtime: RuntimeHeap
    /// Page leases: serves the faults on sequential memory and gives leases back.
    let leaseManager: LeaseManager

    private init(node: Node, heapBox: HeapBox, settings: ClusterSettings, runtime: RuntimeHeap, leaseManager: LeaseManager) {
        self.node = node
        self.heapBox = heapBox
        self.id = node.configuration.id
        self.settings = settings
        self.runtime = runtime
        self.leaseManager = leaseManager
    }

    /// Starts a member with `options` and returns once the heap is mapped and this member has
    /// applied everything the cluster committed before (a linearizable read barrier), so that
    /// roots and data written before are visible. Waits for a leader (up to `readyTimeout`).
    public static func start(_ options: MemberOptions, readyTimeout: Duration = .seconds(120)) async throws(MemberError)
        -> Member
    {
        let configuration = try options.nodeConfiguration()
        let logger = Logger.memberProcess(label: "gallocy.member", level: configuration.logLevel, member: configuration.id)
        return try await start(configuration: configuration, logger: logger, readyTimeout: readyTimeout)
    }

    /// `start(_:)` from an engine configuration (the `gallocy example` commands parse the same
    /// flags as `gallocy node`).
    package static func start(configuration: NodeConfiguration, logger: Logger, readyTimeout: Duration = .seconds(120))
        async throws(MemberError) -> Member
    {
        _ = CGallocyRuntime_thread_prepare()
        let box = HeapBox(member: configuration.id)
        let node: Node
        do {
            node = try await Node.start(configuration, logger: logger, makeHeap: box.factory)
        } catch {
            if let mapError = box.mappingError {
                throw MemberError(mapError.code == .baseInUse ? .heapBaseInUse : .startFailed, mapError.message)
            }
            throw MemberError(.startFailed, error.message)
        }
        // Ready: the heap exists and everything committed before now has applied here.
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: readyTimeout)
        while true {
            do {
                let ready: Bool = try await node.onDriver { driver, done in
                    driver.linearizableRead(deadline: ContinuousClock.now.advanced(by: .seconds(5))) { driver, error in
                        if let error { return done(.failure(error)) }
                        done(.success(driver.machine.settings != nil))
                    }
                }
                if ready, let heap = box.heap, let settings = heap.settings, let leases = box.leases {
                    let manager = LeaseManager(node: node, leases: leases, logger: logger)
                    do { try manager.start() } catch {
                        node.requestStop(nil)
                        await node.shutdown()
                        throw MemberError(.startFailed, "cannot start the fault service: \(error.message)")
                    }
                    return Member(node: node, heapBox: box, settings: settings, runtime: heap.runtime, leaseManager: manager)
                }
            } catch {
                if let mapError = box.mappingError {
                    node.requestStop(nil)
                    await node.shutdown()
                    throw MemberError(mapError.code == .baseInUse ? .heapBaseInUse : .startFailed, mapError.message)
                }
                logger.debug("waiting for the cluster", metadata: ["reason": "\(error)"])
            }
            if clock.now >= deadline {
                node.requestStop(nil)
                await node.shutdown()
                throw MemberError(
                    .unavailable, "the cluster did not become ready within \(readyTimeout) (no leader, or not bootstrapped)")
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Stops the member: its HTTP API, transport and driver. The heap stays mapped (threads may
    /// still read it) but no longer changes.
    public func stop() async {
        leaseManager.stop()
        node.requestStop(nil)
        await node.shutdown()
    }

    /// Returns when the member stopped on its own (a fatal error) or `stop()` was called, with
    /// the reason of a fatal error.
    public func waitUntilStopped() async -> String? {
        await node.waitUntilStopRequested()?.message
    }

    /// Gives the calling thread an alternate signal stack, so that the fault handler runs even if
    /// the thread's own stack is what overflowed. Idempotent and cheap; call it once in every
    /// thread that touches the heap.
    public static func prepareThread() { _ = CGallocyRuntime_thread_prepare() }

    // MARK: - The heap

    /// The first byte of the shared heap, the same address on every member.
    public var heapBase: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: UInt(settings.heapBase))! }
    /// The heap's size in bytes.
    public var heapSize: Int { Int(settings.heapSize) }

    func address(of pointer: UnsafeRawPointer) throws(MemberError) -> UInt64 {
        let address = UInt64(UInt(bitPattern: pointer))
        guard address >= settings.heapBase, address - settings.heapBase < settings.heapSize else {
            throw MemberError(.invalidArgument, "\(pointer) is not inside the shared heap")
        }
        return address
    }

    func pointer(_ address: UInt64) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: UInt(address))! }

    /// Allocates `byteCount` bytes of shared memory (zeroed, 8-byte aligned) through a committed
    /// entry: every member sees the same block at the same address.
    public func allocate(byteCount: Int) async throws(MemberError) -> UnsafeMutableRawPointer {
        Self.prepareThread()
        guard byteCount > 0 else { throw MemberError(.invalidArgument, "allocate of \(byteCount) bytes") }
        do {
            return pointer(try await node.alloc(size: UInt64(byteCount)))
        } catch { throw MemberError(error) }
    }

    /// Allocates `byteCount` bytes of shared memory in coherence mode `mode`. `.release` is
    /// `allocate(byteCount:)`. `.sequential` memory is page-aligned, takes whole pages, and is
    /// sequentially consistent without locks or releases: its pages carry leases (a write needs
    /// the page's write lease, a committed entry; docs/consistency.md, "Sequential memory").
    public func allocate(byteCount: Int, mode: AllocationMode) async throws(MemberError) -> UnsafeMutableRawPointer {
        guard mode == .sequential else { return try await allocate(byteCount: byteCount) }
        Self.prepareThread()
        guard byteCount > 0 else { throw MemberError(.invalidArgument, "allocate of \(byteCount) bytes") }
        let applied: StateMachine.AppliedEntry
        do {
            applied = try await node.commit(.allocIn(size: UInt64(byteCount), member: id, mode: mode))
        } catch { throw MemberError(error) }
        guard case .allocated(let address) = applied.result else {
            throw MemberError(.unavailable, "unexpected result \(applied.result)")
        }
        return pointer(address)
    }

    /// The page leases' timing in this process: the lease asked for (the longest a crashed or
    /// stopped holder blocks a page; a live holder gives it back at half of it), and how long a
    /// lease is kept at least before a waiting request takes it (default 2 s and 2 ms).
    package func configurePageLeases(ttl: Duration, minimumHold: Duration = .milliseconds(2)) {
        leaseManager.configure(ttl: ttl, minimumHold: minimumHold)
    }

    /// What the page leases of this process did (grants received, releases taken, leases lost).
    package var leaseCounters: PageLeases.Counters { heapBox.leases?.counters ?? .init() }

    /// Allocates room for `capacity` values of `T` (memory is zeroed; `T` should be a trivial type
    /// whose all-zero bytes are a valid value, since it is shared as bytes).
    public func allocate<T>(_ type: T.Type, capacity: Int) async throws(MemberError) -> UnsafeMutablePointer<T> {
        guard capacity > 0, MemoryLayout<T>.alignment <= 8 else {
            throw MemberError(.invalidArgument, "allocate of \(capacity) values aligned to \(MemoryLayout<T>.alignment)")
        }
        let raw = try await allocate(byteCount: MemoryLayout<T>.stride * capacity)
        return raw.bindMemory(to: T.self, capacity: capacity)
    }

    /// Frees the block that starts at `pointer` (from any member). Its memory reads as zeros again.
    public func free(_ pointer: UnsafeMutableRawPointer) async throws(MemberError) {
        Self.prepareThread()
        let address = try address(of: pointer)
        do { try await node.free(address: address) } catch { throw MemberError(error) }
    }

    // MARK: - Roots

    /// The block that root `name` points at, or nil. Linearizable: a root set anywhere before this
    /// call is seen.
    public func root(named name: String) async throws(MemberError) -> UnsafeMutableRawPointer? {
        Self.prepareThread()
        let deadline = ContinuousClock.now.advanced(by: node.configuration.requestDeadline)
        do {
            let address: UInt64? = try await node.onDriver { driver, done in
                driver.linearizableRead(deadline: deadline) { driver, error in
                    if let error { return done(.failure(error)) }
                    done(.success(try? driver.machine.pageTable.root(company: 0, name: name)))
                }
            }
            return address.map(pointer)
        } catch { throw MemberError(error) }
    }

    /// Points root `name` at `pointer` (nil removes it).
    public func setRoot(named name: String, to pointer: UnsafeRawPointer?) async throws(MemberError) {
        Self.prepareThread()
        let address = try pointer.map { (p) throws(MemberError) in try self.address(of: p) } ?? 0
        do { _ = try await node.commit(.setRoot(name: name, address: address)) } catch { throw MemberError(error) }
    }

    /// The block at root `name`; if there is none, allocates `byteCount` zeroed bytes, lets
    /// `initialize` fill them, publishes them and sets the root, all under a lock, so that of
    /// several members starting together exactly one creates it and all get the same block.
    public func root(
        named name: String, orCreate byteCount: Int, lease: Duration = .seconds(10),
        initialize: (UnsafeMutableRawPointer) -> Void = { _ in }
    ) async throws(MemberError) -> UnsafeMutableRawPointer {
        if let existing = try await root(named: name) { return existing }
        let lock = try await self.lock("gallocy.root." + name, lease: lease)
        do {
            // Granted: everything committed before the grant has applied here.
            if let existing = try await root(named: name) {
                try await unlock(lock)
                return existing
            }
            let block = try await allocate(byteCount: byteCount)
            initialize(block)
            try await commit()
            try await setRoot(named: name, to: block)
            try await unlock(lock)
            return block
        } catch {
            try? await unlock(lock)
            throw error
        }
    }

    // MARK: - Locks

    /// Acquires lock `name` for `lease` (a lease, not forever: if this member stops or stalls, the
    /// leader expires it and another member may take it; the release of an expired lease is
    /// rejected). Waits while another member holds it, up to `wait` (nil: as long as it takes).
    /// Once it returns, every write released before the grant is visible here.
    public func lock(_ name: String, lease: Duration = .seconds(5), wait: Duration? = nil) async throws(MemberError)
        -> SharedLock
    {
        Self.prepareThread()
        let ttl = UInt64(max(1, lease.components.seconds * 1000 + lease.components.attoseconds / 1_000_000_000_000_000))
        let clock = ContinuousClock()
        let deadline = wait.map { clock.now.advanced(by: $0) }
        while true {
            let applied: StateMachine.AppliedEntry
            do {
                applied = try await node.commit(
                    .lockAcquire(name: name, member: id, ttlMillis: ttl, now: RaftDriver.wallClockMillis()))
            } catch {
                let mapped = MemberError(error)
                guard mapped.code == .timeout || mapped.code == .unavailable else { throw mapped }
                if node.isStopping { throw MemberError(.stopped, "the member stopped while waiting for lock \(name)") }
                if let deadline, clock.now >= deadline { throw mapped }
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            switch applied.result {
            case .lockGranted(let epoch, _):
                return SharedLock(name: name, epoch: epoch)
            case .lockBusy(let holder, let epoch, _):
                if let deadline, clock.now >= deadline {
                    throw MemberError(.lockBusy, "lock \(name) is held by member \(holder) at epoch \(epoch)")
                }
                // Wait until this member sees the lock released or expired (or a second
                // passes: the grant may go to someone else again), then ask again.
                let until = min(deadline ?? .now.advanced(by: .seconds(1)), clock.now.advanced(by: .seconds(1)))
                let _: Result<Void, APIError> = await withCheckedContinuation { continuation in
                    let accepted = node.driver.submit { driver in
                        driver.waitForLock(name: name, notHeldAt: epoch, deadline: until) {
                            continuation.resume(returning: $0)
                        }
                    }
                    if !accepted { continuation.resume(returning: .failure(.unavailable("the member is shutting down"))) }
                }
            default:
                throw MemberError(.unavailable, "unexpected result \(applied.result)")
            }
        }
    }

    /// Releases `lock`, publishing every write this process made since its last release in the
    /// same entry (one Raft entry with every dirty page's diff). Returns once the entry applied
    /// here. If the lease ran out first, throws `.leaseExpired`: nothing was published and the
    /// process's unpublished writes are undone.
    public func unlock(_ lock: SharedLock) async throws(MemberError) {
        Self.prepareThread()
        guard let release = runtime.beginRelease() else {
            do { try await node.lockRelease(name: lock.name, epoch: lock.epoch) } catch { throw MemberError(error) }
            return
        }
        try await publish(release, lock: lock)
    }

    /// Acquires `name`, runs `body`, and releases it (publishing `body`'s writes).
    public func withLock<R>(
        _ name: String, lease: Duration = .seconds(5), _ body: () async throws -> R
    ) async throws -> R {
        let lock = try await self.lock(name, lease: lease)
        let result: R
        do { result = try await body() } catch {
            try? await unlock(lock)
            throw error
        }
        try await unlock(lock)
        return result
    }

    // MARK: - Releases

    /// Publishes every write this process made since its last release (one entry), and returns
    /// once it applied here. Without writes, returns at once.
    public func commit() async throws(MemberError) {
        Self.prepareThread()
        guard let release = runtime.beginRelease() else { return }
        try await publish(release, lock: nil)
    }

    private func publish(_ release: RuntimeHeap.Release, lock: SharedLock?) async throws(MemberError) {
        let body = CommandBody.write(
            member: id, pages: release.writes, releaseLock: lock?.name, releaseEpoch: lock?.epoch ?? 0)
        let runtime = self.runtime
        // A release has no deadline: its pages' committed contents are kept until its entry
        // applies, and it is proposed again until it does (or the member stops).
        let deadline = ContinuousClock.now.advanced(by: .seconds(365 * 24 * 3600))
        let outcome: Result<StateMachine.AppliedEntry, APIError> = await withCheckedContinuation { continuation in
            let accepted = node.driver.submit { driver in
                guard !driver.stopped else {
                    return continuation.resume(returning: .failure(.unavailable("the member is shutting down")))
                }
                driver.propose(
                    body, deadline: deadline,
                    onApplied: { applied in runtime.finishRelease(release.id, accepted: applied.result.isApplied) }
                ) { continuation.resume(returning: $0) }
            }
            if !accepted { continuation.resume(returning: .failure(.unavailable("the member is shutting down"))) }
        }
        switch outcome {
        case .success(let applied):
            if case .rejected(let rejection) = applied.result { throw MemberError(Node.apiError(rejection)) }
        case .failure(let error):
            // Not applied under our eyes (the member stops, or caught up by snapshot): its
            // outcome is unknown. Its pages go back into the dirty set, so that the next
            // release publishes the bytes again: a retry loses nothing.
            runtime.abandonRelease(release.id)
            throw MemberError(error)
        }
    }

    // MARK: - Barriers

    /// Publishes this process's writes, then waits until `participants` members (this one
    /// included) have arrived at barrier `name`. Once it returns, every write published before
    /// any participant arrived is visible here.
    ///
    /// `generation` makes the arrival safe to repeat after a crash: the barrier's generations are
    /// counted from 0 (the first time it opens ends generation 0), and an arrival for a generation
    /// that already opened returns at once instead of joining the next one. A program that
    /// resumes after a restart passes the generation it is at (its iteration, say); without it,
    /// the arrival is for whatever generation is current.
    public func barrier(_ name: String, participants: Int, generation: UInt64? = nil) async throws(MemberError) {
        guard participants > 0, participants <= Int(UInt32.max) else {
            throw MemberError(.invalidArgument, "barrier \(name) with \(participants) participants")
        }
        try await commit()
        let applied: StateMachine.AppliedEntry
        do {
            applied = try await node.commit(barrierCommand(name, participants: UInt32(participants), generation: generation))
        } catch { throw MemberError(error) }
        guard case .barrier(let opened, let arrivedAt) = applied.result else {
            throw MemberError(.unavailable, "unexpected result \(applied.result)")
        }
        if opened { return }
        let outcome: Result<Void, APIError> = await withCheckedContinuation { continuation in
            let accepted = node.driver.submit { driver in
                driver.waitForBarrier(name: name, generation: arrivedAt) { continuation.resume(returning: $0) }
            }
            if !accepted { continuation.resume(returning: .failure(.unavailable("the member is shutting down"))) }
        }
        if case .failure(let error) = outcome { throw MemberError(error) }
    }

    private func barrierCommand(_ name: String, participants: UInt32, generation: UInt64?) -> CommandBody {
        guard let generation else { return .barrierArrive(name: name, participants: participants, member: id) }
        return .barrierArriveAt(name: name, participants: participants, member: id, generation: generation)
    }

    // MARK: - Atomics

    /// Adds `delta` (wrapping) to the 8-byte word at `word` through a committed entry; returns the
    /// value before. Every member applies it in log order: concurrent adds all count.
    @discardableResult
    public func atomicAdd(_ word: UnsafeMutablePointer<UInt64>, _ delta: UInt64) async throws(MemberError) -> UInt64 {
        try await atomic(word, .add(delta)).old
    }

    /// Sets the word to `value` if it holds `expected`; returns whether it did and the value before.
    public func compareAndSwap(_ word: UnsafeMutablePointer<UInt64>, expected: UInt64, desired: UInt64)
        async throws(MemberError) -> (exchanged: Bool, old: UInt64)
    {
        let result = try await atomic(word, .compareAndSwap(expect: expected, value: desired))
        return (result.ok, result.old)
    }

    /// Sets the word to `value`; returns the value before.
    @discardableResult
    public func atomicSwap(_ word: UnsafeMutablePointer<UInt64>, _ value: UInt64) async throws(MemberError) -> UInt64 {
        try await atomic(word, .swap(value)).old
    }

    /// Reads the word as the cluster last committed it (linearizable; not this process's
    /// unpublished writes).
    public func atomicLoad(_ word: UnsafeMutablePointer<UInt64>) async throws(MemberError) -> UInt64 {
        Self.prepareThread()
        let address = try address(of: word)
        do {
            let bytes = try await node.read(address: address, length: 8)
            return bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        } catch { throw MemberError(error) }
    }

    private func atomic(_ word: UnsafeMutablePointer<UInt64>, _ op: AtomicOp) async throws(MemberError) -> (
        ok: Bool, old: UInt64
    ) {
        Self.prepareThread()
        let address = try address(of: word)
        guard address % 8 == 0 else { throw MemberError(.invalidArgument, "atomic on a misaligned word at \(word)") }
        do { return try await node.atomic(address: address, op: op) } catch { throw MemberError(error) }
    }

    // MARK: - Introspection

    /// What the runtime has done: releases, undone releases, changes applied.
    package var runtimeCounters: RuntimeHeap.Counters { runtime.counterValues }
    /// The runtime heap (for tests and benchmarks).
    package var runtimeHeap: RuntimeHeap { runtime }
}

/// A lock held by this member: its name and the epoch of the grant.
public struct SharedLock: Sendable, Hashable {
    public let name: String
    public let epoch: UInt64

    /// A lock as `lock(_:)` granted it (for bindings that keep the name and epoch themselves).
    public init(name: String, epoch: UInt64) {
        self.name = name
        self.epoch = epoch
    }
}

/// The runtime heap once the state machine has made it (on the driver thread, when the settings
/// are known), shared with the threads that wait for it.
final class HeapBox: Sendable {
    private let member: UInt64
    /// The page leases of the heap, once made (the heap image's lease observer).
    private let leasesMade = Mutex<PageLeases?>(nil)

    init(member: UInt64) { self.member = member }

    var leases: PageLeases? { leasesMade.withLock { $0 } }

    struct Made {
        var runtime: RuntimeHeap
        var image: HeapImage
        var settings: ClusterSettings?
    }

    private let state = Mutex<(runtime: RuntimeHeap?, settings: ClusterSettings?, error: RuntimeError?)>((nil, nil, nil))
    /// The image, touched only by the driver thread (the factory's caller).
    nonisolated(unsafe) private var image: HeapImage?

    var heap: (runtime: RuntimeHeap, settings: ClusterSettings?)? {
        state.withLock { s in s.runtime.map { ($0, s.settings) } }
    }

    var mappingError: RuntimeError? { state.withLock { $0.error } }

    /// The state machine's heap factory: maps the heap at the settings' base the first time, and
    /// gives the same image back afterwards (a snapshot restore replaces its contents in place).
    var factory: StateMachine.HeapFactory {
        { [self] settings throws(StateMachineError) in
            if let image {
                guard image.settings == settings else {
                    throw StateMachineError(
                        .invalidArgument, "the heap is mapped for \(image.settings); the log now says \(settings)")
                }
                return image
            }
            let mapping: HeapMapping
            do throws(RuntimeError) {
                mapping = try HeapMapping(
                    base: UInt(settings.heapBase), size: Int(settings.heapSize), pageSize: Int(settings.pageSize),
                    initialAccess: .readOnly, mode: .release)
            } catch {
                state.withLock { $0.error = error }
                throw StateMachineError(.system, "cannot map the shared heap: \(error.message)")
            }
            let runtime = RuntimeHeap(mapping: mapping)
            let made = try HeapImage(base: mapping.alias, settings: settings, initiallyZero: true)
            made.writer = runtime
            let leases = PageLeases(mapping: mapping, member: member)
            made.leaseObserver = leases
            leasesMade.withLock { $0 = leases }
            image = made
            state.withLock {
                $0.runtime = runtime
                $0.settings = settings
            }
            return made
        }
    }
}
