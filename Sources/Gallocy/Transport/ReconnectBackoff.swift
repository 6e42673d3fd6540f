import NIOCore

/// Exponential back-off with jitter for redialing a peer: the n-th consecutive failure waits a
/// delay drawn uniformly from [d/2, d], where d = initial * 2^n capped at `maximum`.
package struct ReconnectBackoff: Sendable {
    package let initial: TimeAmount
    package let maximum: TimeAmount

    package init(initial: TimeAmount, maximum: TimeAmount) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The delay before the next attempt after `failures` consecutive failures (0 = the first
    /// retry), using `random` (a value in 0..<1) for the jitter.
    package func delay(afterFailures failures: Int, random: Double) -> TimeAmount {
        let base = max(initial.nanoseconds, 1)
        let cap = max(maximum.nanoseconds, base)
        var d = base
        var n = 0
        while n < failures && d < cap {
            d = d > cap / 2 ? cap : d * 2
            n += 1
        }
        d = min(d, cap)
        let jittered = Double(d) * (0.5 + 0.5 * min(max(random, 0), 1))
        return .nanoseconds(Int64(jittered))
    }
}
