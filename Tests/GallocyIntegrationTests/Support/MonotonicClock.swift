#if canImport(Glibc)
    import Glibc
#endif

/// Nanoseconds of CLOCK_MONOTONIC: one clock for every client thread of a test, which is all a
/// history needs (only the order of invocations and responses matters, never wall time).
enum MonotonicClock {
    static func nanoseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }
}
