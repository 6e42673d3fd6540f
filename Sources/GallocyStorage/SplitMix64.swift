import GallocyRaft

// The storage workload and tests draw from the Raft core's SplitMix64, whose output is fixed by
// its definition (so a seed means the same thing in every build).
extension SplitMix64 {
    /// A number in `0..<bound` (0 when `bound` is 0); the slight modulo bias does not matter here.
    package mutating func below(_ bound: UInt64) -> UInt64 { bound == 0 ? 0 : next() % bound }

    package mutating func bytes(_ count: Int) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        var k = 0
        while k < count {
            var word = next()
            for _ in 0..<min(8, count - k) {
                result[k] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                k += 1
            }
        }
        return result
    }
}
