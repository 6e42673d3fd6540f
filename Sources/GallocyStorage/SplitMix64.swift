/// SplitMix64: a tiny, fast, seedable generator whose output is fixed by its definition (so a
/// seed means the same thing in every build).
package struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    package init(seed: UInt64) { state = seed }

    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

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
