import GallocyCodec
import GallocyStateMachine

extension RaftDriver {
    /// The leader decides that page leases ran out (by its wall clock) and logs it, as for locks:
    /// applying the log never reads a clock. A holder that crashed or was stopped blocks the
    /// page for at most its lease (plus this check's period and a commit).
    func expirePageLeases(now: ContinuousClock.Instant) {
        guard machine.settings != nil else { return }
        let wall = Self.wallClockMillis()
        guard let expired = try? machine.pageTable.expiredPageLeases(company: 0, now: wall), !expired.isEmpty else {
            if !pageLeaseExpiriesProposed.isEmpty { pageLeaseExpiriesProposed = [:] }
            return
        }
        for lease in expired {
            if let last = pageLeaseExpiriesProposed[lease.page], last.grant == lease.grant,
                last.at.duration(to: now) < .seconds(1)
            {
                continue
            }
            pageLeaseExpiriesProposed[lease.page] = (lease.grant, now)
            proposeUntracked(.leaseExpire(page: lease.page, grant: lease.grant, now: wall))
        }
    }
}
