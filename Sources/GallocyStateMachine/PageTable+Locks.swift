import GallocyCodec

// Locks, barriers and named roots. Times are the leader's milliseconds written into the command;
// nothing here reads a clock.
extension PageTable {
    func acquireLock(
        name: String, member: UInt64, ttlMillis: UInt64, now: UInt64, company: Company, index: UInt64
    ) throws(StateMachineError) -> ApplyResult {
        guard ttlMillis > 0 else {
            return .rejected(Rejection(.invalidArgument, "lock \"\(name)\" asked for with a lease of 0 ms"))
        }
        let current = try lock(company: company, name: name)
        if let current, let holder = current.holder, let expiresAt = current.expiresAt, expiresAt > now {
            return .lockBusy(holder: holder, epoch: current.epoch, expiresAt: expiresAt)
        }
        // Free, or its lease ran out at or before `now`: a new grant with the next epoch.
        let epoch = (current?.epoch ?? 0) + 1
        let (sum, overflow) = now.addingReportingOverflow(ttlMillis)
        let expiresAt = overflow || sum > UInt64(Int64.max) ? UInt64(Int64.max) : sum
        try run(
            .lockUpsert, .integer(Int64(company)), .text(name), .unsigned(member), .unsigned(epoch), .unsigned(expiresAt),
            .unsigned(index))
        return .lockGranted(epoch: epoch, expiresAt: expiresAt)
    }

    /// A release (or, with `expiring`, the leader's note that the lease ran out): applies only if
    /// the lock is still held at `epoch`.
    func releaseLock(name: String, epoch: UInt64, company: Company, expiring: Bool) throws(StateMachineError) -> ApplyResult {
        let current = try lock(company: company, name: name)
        guard let current, current.isHeld(at: epoch) else {
            return .rejected(Rejection(.staleEpoch, Self.staleMessage(name: name, epoch: epoch, lock: current)))
        }
        try run(
            .lockRelease, .integer(Int64(company)), .text(name))
        return expiring ? .lockExpired : .lockReleased
    }

    static func staleMessage(name: String, epoch: UInt64, lock: LockState?) -> String {
        guard let lock else { return "lock \"\(name)\" was never granted, so epoch \(epoch) does not hold it" }
        guard let holder = lock.holder else {
            return "lock \"\(name)\" is not held (last epoch \(lock.epoch)); epoch \(epoch) expired or was released"
        }
        return "lock \"\(name)\" is held by member \(holder) at epoch \(lock.epoch), not at epoch \(epoch)"
    }

    /// An arrival of `member` at barrier `name`: `barrierArrive` (`generation` nil) or
    /// `barrierArriveAt` (the generation the member means). Each member counts once per
    /// generation; the arrival that brings the count to `participants` opens the barrier.
    func arrive(
        barrier name: String, participants: UInt32, member: UInt64, generation wanted: UInt64?, company: Company,
        index: UInt64
    ) throws(StateMachineError) -> ApplyResult {
        guard participants > 0 else {
            return .rejected(Rejection(.participantsMismatch, "barrier \"\(name)\" with 0 participants"))
        }
        let current = try barrierRow(company: company, name: name)
        let generation = current?.generation ?? 0
        if let wanted {
            if wanted < generation {
                // That generation opened already: the member is through it (it arrived before a
                // crash, or the others got there without it). Nothing changes.
                return .barrier(opened: true, generation: wanted)
            }
            if wanted > generation {
                return .rejected(
                    Rejection(
                        .invalidArgument,
                        "barrier \"\(name)\" is in generation \(generation); member \(member) cannot arrive in generation \(wanted), which has not begun"
                    ))
            }
        }
        if let current, current.arrived > 0, current.participants != participants {
            return .rejected(
                Rejection(
                    .participantsMismatch,
                    "barrier \"\(name)\" generation \(current.generation) has \(current.participants) participants, not \(participants)"
                ))
        }
        if let current, current.arrived > 0,
            try firstRow(.barrierArrivalSelect, .integer(Int64(company)), .text(name), .unsigned(member), row: { _ in true })
                != nil
        {
            // Already counted in this generation (a restarted process arriving again).
            return .barrier(opened: false, generation: generation)
        }
        let arrived = (current?.arrived ?? 0) + 1
        let opened = arrived >= participants
        try run(
            .barrierUpsert, .integer(Int64(company)), .text(name), .integer(Int64(participants)), .integer(opened ? 0 : Int64(arrived)),
            .unsigned(opened ? generation + 1 : generation),
            opened ? .unsigned(index) : (current?.openedIndex).map { .unsigned($0) } ?? .null)
        if opened {
            if current?.arrived ?? 0 > 0 { try run(.barrierArrivalsDelete, .integer(Int64(company)), .text(name)) }
        } else {
            try run(.barrierArrivalInsert, .integer(Int64(company)), .text(name), .unsigned(member), .unsigned(index))
        }
        return .barrier(opened: opened, generation: generation)
    }

    func setRoot(
        name: String, address: UInt64, company: Company, settings: ClusterSettings, index: UInt64
    ) throws(StateMachineError) -> ApplyResult {
        if address == 0 {
            try run(.rootDelete, .integer(Int64(company)), .text(name))
            return .rootSet
        }
        guard address >= settings.heapBase, address - settings.heapBase < settings.heapSize else {
            return .rejected(
                Rejection(.invalidArgument, "root \"\(name)\" at 0x\(String(address, radix: 16)) is outside the heap"))
        }
        try run(
            .rootUpsert, .integer(Int64(company)), .text(name), .unsigned(address), .unsigned(index))
        return .rootSet
    }
}
