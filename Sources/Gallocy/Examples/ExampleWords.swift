/// A job's fixed-size header, read and written as 8-byte little-endian words at the start of its
/// root block. Every example checks the magic word and the shape before it trusts the rest.
package struct ExampleWords {
    package let base: UnsafeMutablePointer<UInt64>

    package init(_ raw: UnsafeMutableRawPointer) { base = raw.assumingMemoryBound(to: UInt64.self) }

    package subscript(_ index: Int) -> UInt64 {
        get { UInt64(littleEndian: base[index]) }
        nonmutating set { base[index] = newValue.littleEndian }
    }

    package func pointer(_ index: Int) -> UnsafeMutablePointer<UInt64> { base + index }

    /// Eight ASCII bytes as a little-endian word (a block's magic).
    package static func magic(_ text: StaticString) -> UInt64 {
        precondition(text.utf8CodeUnitCount == 8)
        var word: UInt64 = 0
        for k in 0..<8 { word |= UInt64(text.utf8Start[k]) << (8 * UInt64(k)) }
        return word
    }
}

extension Int {
    /// Rounded up to a multiple of `alignment` (a power of two).
    package func roundedUp(to alignment: Int) -> Int { (self + alignment - 1) & ~(alignment - 1) }
}
