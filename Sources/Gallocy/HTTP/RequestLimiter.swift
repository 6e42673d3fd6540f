import Synchronization

/// Bounds how many service calls the HTTP API runs at once across all connections, so that a
/// flood of clients meets a quick 503 instead of growing the member's task count without limit.
/// Also lets shutdown wait until the calls already started have finished.
package final class RequestLimiter: Sendable {
    /// The most calls that may run at once.
    package let limit: Int
    private let running = Atomic<Int>(0)

    package init(limit: Int) {
        self.limit = max(1, limit)
    }

    /// The number of calls running now.
    package var current: Int { running.load(ordering: .relaxed) }

    /// Takes a slot; false (and nothing taken) when all `limit` slots are in use.
    package func tryAcquire() -> Bool {
        var seen = running.load(ordering: .relaxed)
        while seen < limit {
            let (exchanged, original) = running.compareExchange(
                expected: seen, desired: seen + 1, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            seen = original
        }
        return false
    }

    /// Gives back a slot taken by `tryAcquire`.
    package func release() {
        running.subtract(1, ordering: .acquiringAndReleasing)
    }
}
