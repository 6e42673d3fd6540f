import Testing

@testable import Gallocy

/// The layered allocator's size classes and arena layout (docs/allocator.md), without a member.
struct AllocatorLayoutTests {
    @Test func everySizeMapsToTheSmallestClassThatHoldsIt() {
        for size in 1...SizeClasses.maxSmall {
            let c = SizeClasses.index(for: size)
            #expect(SizeClasses.sizes[c] >= size, "\(size) -> \(SizeClasses.sizes[c])")
            if c > 0 { #expect(SizeClasses.sizes[c - 1] < size, "\(size) -> \(SizeClasses.sizes[c])") }
            // At most a quarter of a block is rounding (above the 16-byte steps).
            if size > 128 { #expect(Double(SizeClasses.sizes[c] - size) < 0.25 * Double(SizeClasses.sizes[c])) }
        }
        #expect(SizeClasses.sizes.allSatisfy { $0 % 16 == 0 })
        #expect(SizeClasses.capacities.allSatisfy { $0 <= ArenaGeometry.bitmapWords * 64 && $0 >= 8 })
    }

    @Test(arguments: [(4096, 63), (4096, 16), (4096, 1), (16_384, 63), (65_536, 100)])
    func descriptorsNeverCrossAPageAndRegionsDoNotOverlap(pageSize: Int, slabs: Int) {
        #expect(ArenaGeometry.validate(pageSize: pageSize, slabsPerArena: slabs) == nil)
        let geometry = ArenaGeometry(pageSize: pageSize, slabsPerArena: slabs)
        for slab in 0..<slabs {
            let start = geometry.descriptorOffset(slab: slab)
            let end = start + ArenaGeometry.descriptorHeader + 8 * ArenaGeometry.bitmapWords
            #expect(start / pageSize == (end - 1) / pageSize, "descriptor \(slab) crosses a page")
            #expect(end <= geometry.remoteOffset)
            #expect(geometry.remoteBitmapOffset(slab: slab) + ArenaGeometry.remoteStride <= geometry.slabsOffset)
            #expect(geometry.slabOffset(slab: slab) % pageSize == 0)
        }
        #expect(geometry.remoteOffset % pageSize == 0)
        #expect(geometry.arenaBytes == geometry.slabsOffset + slabs * ArenaGeometry.slabSize)
        #expect(geometry.arenaBytes % pageSize == 0)
    }

    @Test func unsupportedPagesAreRefusedWithAReason() {
        #expect(ArenaGeometry.validate(pageSize: 512, slabsPerArena: 8) != nil)
        #expect(ArenaGeometry.validate(pageSize: 131_072, slabsPerArena: 8) != nil)
        #expect(ArenaGeometry.validate(pageSize: 4096, slabsPerArena: 0) != nil)
    }
}
