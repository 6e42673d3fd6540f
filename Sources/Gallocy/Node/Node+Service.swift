import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage

/// The HTTP API's calls, served by the driver: each one becomes a task on the driver thread and
/// waits for its answer (see docs/engine.md, "Waiters and sessions").
extension Node: NodeService {
    /// Runs `body` on the driver thread and waits until it calls `done` (exactly once).
    func onDriver<T: Sendable>(
        _ body: @escaping @Sendable (RaftDriver, _ done: @escaping @Sendable (Result<T, APIError>) -> Void) -> Void
    ) async throws(APIError) -> T {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, APIError>, Never>) in
            let accepted = driver.submit { driver in
                guard !driver.stopped else {
                    return continuation.resume(returning: .failure(.unavailable("the member is shutting down")))
                }
                body(driver) { continuation.resume(returning: $0) }
            }
            if !accepted { continuation.resume(returning: .failure(.unavailable("the member is shutting down"))) }
        }
        return try result.get()
    }

    private var deadline: ContinuousClock.Instant { ContinuousClock.now.advanced(by: configuration.requestDeadline) }

    /// Proposes `body` and returns the entry once it applied on this member; a rejection becomes
    /// the status the contract asks for.
    func commit(_ body: CommandBody, deadline: ContinuousClock.Instant? = nil) async throws(APIError)
        -> StateMachine.AppliedEntry
    {
        let deadline = deadline ?? self.deadline
        let applied: StateMachine.AppliedEntry = try await onDriver { driver, done in
            driver.propose(body, deadline: deadline) { done($0) }
        }
        if case .rejected(let rejection) = applied.result {
            throw Self.apiError(rejection)
        }
        return applied
    }

    static func apiError(_ rejection: Rejection) -> APIError {
        let code: String
        switch rejection.code {
        case .notBootstrapped: code = "not_ready"
        case .notAllocated: code = "not_allocated"
        case .outsideAllocation: code = "outside_allocation"
        case .staleEpoch: code = "stale_epoch"
        case .outOfSpace: code = "out_of_space"
        case .misaligned: code = "misaligned"
        case .settingsConflict: code = "settings_conflict"
        default: code = "\(rejection.code)".lowercased()
        }
        return APIError(status: rejection.suggestedHTTPStatus, code: code, message: rejection.message)
    }

    package func status() async -> NodeStatus {
        let v = driver.view
        return NodeStatus(
            id: configuration.id, role: v.role, term: v.term, leader: v.leader == 0 ? nil : v.leader,
            commitIndex: v.commitIndex, appliedIndex: v.appliedIndex, lastIndex: v.lastIndex,
            snapshotIndex: v.snapshotIndex, members: v.members)
    }

    package func alloc(size: UInt64) async throws(APIError) -> UInt64 {
        guard size > 0 else { throw .badRequest("size must be positive") }
        let applied = try await commit(.alloc(size: size, member: configuration.id))
        guard case .allocated(let address) = applied.result else {
            throw .unavailable("unexpected result \(applied.result)")
        }
        return address
    }

    package func free(address: UInt64) async throws(APIError) {
        let applied = try await commit(.free(address: address))
        if case .freed = applied.result { return }
        throw .unavailable("unexpected result \(applied.result)")
    }

    package func write(address: UInt64, bytes: [UInt8]) async throws(APIError) -> UInt64 {
        try await withCheckedContinuation { continuation in
            _ = write(address: address, bytes: bytes) { continuation.resume(returning: $0) }
        }.get()
    }

    /// One task on the driver: the byte ranges are checked there (the apply checks pages again),
    /// then the write is proposed at once. This member may not have applied an allocation another
    /// member already acknowledged: before it refuses, it checks again after a linearizable read
    /// barrier.
    package func write(
        address: UInt64, bytes: [UInt8], done: @escaping @Sendable (Result<UInt64, APIError>) -> Void
    ) -> Bool {
        guard !bytes.isEmpty else {
            done(.failure(.badRequest("the body is empty: nothing to write")))
            return true
        }
        let deadline = self.deadline
        let member = configuration.id
        let accepted = driver.submit { driver in
            guard !driver.stopped else { return done(.failure(.unavailable("the member is shutting down"))) }
            let propose = { (driver: RaftDriver, pages: [PageWrite]) in
                driver.propose(
                    .write(member: member, pages: pages, releaseLock: nil, releaseEpoch: 0), deadline: deadline
                ) { result in
                    done(
                        result.flatMap { applied in
                            if case .rejected(let rejection) = applied.result { return .failure(Self.apiError(rejection)) }
                            return .success(applied.index)
                        })
                }
            }
            if case .success(let pages) = Self.pageWrites(driver.machine, address: address, bytes: bytes) {
                return propose(driver, pages)
            }
            driver.linearizableRead(deadline: deadline) { driver, error in
                if let error { return done(.failure(error)) }
                switch Self.pageWrites(driver.machine, address: address, bytes: bytes) {
                case .success(let pages): propose(driver, pages)
                case .failure(let error): done(.failure(error))
                }
            }
        }
        if !accepted { done(.failure(.unavailable("the member is shutting down"))) }
        return true
    }

    /// One `PageWrite` per page the range touches, each writing every byte given (so the
    /// write is idempotent and does not depend on what the page held).
    static func pageWrites(_ machine: StateMachine, address: UInt64, bytes: [UInt8]) -> Result<[PageWrite], APIError> {
        guard let settings = machine.settings else { return .failure(.unavailable("the cluster is not bootstrapped yet")) }
        let length = UInt64(bytes.count)
        let (end, overflow) = address.addingReportingOverflow(length)
        guard !overflow, address >= settings.heapBase, end <= settings.heapBase + settings.heapSize else {
            return .failure(.badRequest("the range leaves the heap"))
        }
        let allocated = (try? machine.pageTable.isAllocated(company: 0, address: address, length: length)) ?? false
        guard allocated else {
            return .failure(APIError(
                status: 400, code: "outside_allocation", message: "the range [\(hex(address)), \(hex(end))) leaves allocated memory"))
        }
        let pageSize = UInt64(settings.pageSize)
        var writes: [PageWrite] = []
        var cursor = address
        while cursor < end {
            let page = (cursor - settings.heapBase) / pageSize
            let pageStart = settings.heapBase + page * pageSize
            let chunkEnd = min(end, pageStart + pageSize)
            let slice = Array(bytes[Int(cursor - address)..<Int(chunkEnd - address)])
            writes.append(PageWrite(page: page, diff: PageDiff(writing: slice, atOffset: Int(cursor - pageStart))))
            cursor = chunkEnd
        }
        return .success(writes)
    }

    static func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

    package func read(address: UInt64, length: Int) async throws(APIError) -> [UInt8] {
        try await withCheckedContinuation { continuation in
            _ = read(address: address, length: length) { continuation.resume(returning: $0) }
        }.get()
    }

    package func read(
        address: UInt64, length: Int, done: @escaping @Sendable (Result<[UInt8], APIError>) -> Void
    ) -> Bool {
        guard length >= 0 else {
            done(.failure(.badRequest("len must not be negative")))
            return true
        }
        let deadline = self.deadline
        let accepted = driver.submit { driver in
            guard !driver.stopped else { return done(.failure(.unavailable("the member is shutting down"))) }
            driver.linearizableRead(deadline: deadline) { driver, error in
                if let error { return done(.failure(error)) }
                do throws(StateMachineError) {
                    done(.success(try driver.machine.read(address: address, length: length)))
                } catch {
                    switch error.code {
                    case .notBootstrapped: done(.failure(.unavailable(error.message)))
                    default: done(.failure(.badRequest(error.message)))
                    }
                }
            }
        }
        if !accepted { done(.failure(.unavailable("the member is shutting down"))) }
        return true
    }

    package func atomic(address: UInt64, op: AtomicOp) async throws(APIError) -> (ok: Bool, old: UInt64) {
        let applied = try await commit(.atomic(address: address, op: op))
        guard case .atomic(let ok, let old) = applied.result else {
            throw .unavailable("unexpected result \(applied.result)")
        }
        return (ok, old)
    }

    package func lockAcquire(name: String, ttlMillis: UInt64, waitMillis: UInt64) async throws(APIError) -> UInt64 {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = self.deadline
        while true {
            let applied = try await commit(
                .lockAcquire(name: name, member: configuration.id, ttlMillis: ttlMillis, now: RaftDriver.wallClockMillis()),
                deadline: deadline)
            switch applied.result {
            case .lockGranted(let epoch, _):
                return epoch
            case .lockBusy(let holder, let epoch, _):
                let elapsed = start.duration(to: clock.now)
                if elapsed >= .milliseconds(Int64(clamping: waitMillis)) {
                    throw .conflict("lock \(name) is held by member \(holder) at epoch \(epoch)")
                }
                // A wait_ms beyond the request deadline: no request waits longer than 10 s.
                if clock.now.advanced(by: .milliseconds(100)) >= deadline {
                    throw .timeout("lock \(name) is still held by member \(holder); wait_ms is longer than a request may wait")
                }
                try? await Task.sleep(for: .milliseconds(25))
            default:
                throw .unavailable("unexpected result \(applied.result)")
            }
        }
    }

    package func lockRelease(name: String, epoch: UInt64) async throws(APIError) {
        let applied = try await commit(.lockRelease(name: name, epoch: epoch))
        if case .lockReleased = applied.result { return }
        throw .unavailable("unexpected result \(applied.result)")
    }

    package func pages(from: UInt64, count: Int) async throws(APIError) -> [[String: JSONValue]] {
        guard count >= 0 else { throw .badRequest("count must not be negative") }
        let deadline = self.deadline
        // After a read barrier, like memory reads: the rows reflect every acknowledged change.
        return try await onDriver { driver, done in
            driver.linearizableRead(deadline: deadline) { driver, error in
                if let error { return done(.failure(error)) }
                Self.pageRows(driver, from: from, count: count, done: done)
            }
        }
    }

    private static func pageRows(
        _ driver: RaftDriver, from: UInt64, count: Int, done: @Sendable (Result<[[String: JSONValue]], APIError>) -> Void
    ) {
        guard let settings = driver.machine.settings else {
            return done(.failure(.unavailable("the cluster is not bootstrapped yet")))
        }
        guard from >= settings.heapBase, from < settings.heapBase + settings.heapSize else {
            return done(.failure(.badRequest("from is outside the heap")))
        }
        let first = (from - settings.heapBase) / UInt64(settings.pageSize)
        do {
            let rows = try driver.machine.pageTable.pages(company: 0, from: first, count: UInt64(count))
            done(.success(rows.map(Self.json)))
        } catch {
            done(.failure(.unavailable("reading the page table failed: \(error)")))
        }
    }

    static func json(_ row: PageRow) -> [String: JSONValue] {
        func optional(_ v: UInt64?) -> JSONValue { v.map { .uint($0) } ?? .null }
        return [
            "company": .uint(UInt64(row.company)), "page": .uint(row.page), "addr": .string(hex(row.address)),
            "state": .string(row.state.rawValue), "blocks": .uint(row.blocks), "last_writer": optional(row.lastWriter),
            "last_write_index": optional(row.lastWriteIndex), "write_count": .uint(row.writeCount),
            "lease_holder": optional(row.leaseHolder), "lease_epoch": .uint(row.leaseEpoch),
            "lease_expires_at": optional(row.leaseExpiresAt),
        ]
    }

    package func snapshot() async throws(APIError) -> UInt64 {
        try await onDriver { driver, done in
            do throws(APIError) { done(.success(try driver.takeSnapshot())) } catch { done(.failure(error)) }
        }
    }

    package func transferLeader(to target: UInt64) async throws(APIError) {
        let clock = ContinuousClock()
        let deadline = self.deadline
        var lastAsked: ContinuousClock.Instant?
        while clock.now < deadline {
            let v = driver.view
            if v.leader == target { return }
            guard v.members.contains(target) else { throw .badRequest("member \(target) is not in the cluster") }
            if lastAsked.map({ $0.duration(to: clock.now) >= .seconds(2) }) ?? true {
                lastAsked = clock.now
                let _: Void = try await onDriver { driver, done in
                    do { try driver.node.transferLeader(to: target) } catch {}
                    done(.success(()))
                }
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        throw driver.view.leader == 0 ? .unavailable("no leader is known") : .timeout("member \(target) did not become leader in time")
    }

    package func addMember(id: UInt64, peer: String) async throws(APIError) {
        guard id != 0 else { throw .badRequest("member id must be positive") }
        do { _ = try PeerAddress(parsing: peer) } catch { throw .badRequest("bad peer address \(peer): \(error)") }
        let context = Array(peer.utf8)
        let v = driver.view
        if v.members.contains(id) {
            // Already a voter: done. A learner: promote below.
        }
        try await changeMembership(ConfChange(.addLearner, node: id, context: context), tolerateNoEffect: true)
        // Promote once it has caught up (the leader refuses before).
        try await changeMembership(ConfChange(.addVoter, node: id, context: context), tolerateNoEffect: true)
    }

    package func removeMember(id: UInt64) async throws(APIError) {
        try await changeMembership(ConfChange(.remove, node: id), tolerateNoEffect: true)
    }

    /// Proposes `change` on the leader (this member), retrying while another change is pending or
    /// a learner catches up, until it applied here or the deadline passed.
    private func changeMembership(_ change: ConfChange, tolerateNoEffect: Bool) async throws(APIError) {
        let clock = ContinuousClock()
        let deadline = self.deadline
        var lastForward: ContinuousClock.Instant?
        while true {
            let forward = lastForward.map { $0.duration(to: clock.now) >= .seconds(1) } ?? true
            do {
                let _: Void = try await onDriver { driver, done in
                    guard driver.node.role == .leader else {
                        // A follower forwards the change to the leader and answers once the
                        // change has applied here.
                        return done(driver.forwardConfChange(change, send: forward))
                    }
                    if tolerateNoEffect, driver.node.confState.applying(change) == nil {
                        return done(.success(()))
                    }
                    driver.proposeConfChange(change) { done($0) }
                }
                return
            } catch {
                if error.code == "forwarded", forward { lastForward = clock.now }
                guard ["busy", "catching_up", "unavailable", "forwarded"].contains(error.code) else { throw error }
                guard clock.now.advanced(by: .milliseconds(100)) < deadline else {
                    throw error.status == 503 && error.code != "unavailable" ? .timeout(error.message) : error
                }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    package func metricsText() async -> String { metrics.text() }
}
