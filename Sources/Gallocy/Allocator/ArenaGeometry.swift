/// Where things are inside an arena of the layered allocator (docs/allocator.md), the same for
/// every arena of a cluster: the numbers are written once into the allocator's directory by the
/// member that creates it, and every member reads them from there.
///
/// ```
/// arena base (page-aligned, a block of Member.allocate)
/// | slab descriptors: 576 bytes each, floor(pageSize / 576) per page, none across a page
/// | remote-free bitmaps: 512 bytes per slab (changed only by committed atomics)
/// | slabs: slabsPerArena x 64 KiB, page-aligned
/// ```
///
/// A slab descriptor is `class + 1` (UInt32, 0: the slab is empty and belongs to no class), the
/// number of allocated blocks (UInt32, derived: recomputed from the bitmap on attach), then the
/// allocation bitmap (64 words, bit set = allocated). The class and the bitmap share a page, so
/// that a release, which snapshots each page whole, never publishes a bit without its class.
struct ArenaGeometry: Sendable, Equatable {
    static let slabShift = 16
    static let slabSize = 1 << slabShift
    static let descriptorStride = 576
    static let descriptorHeader = 8
    static let bitmapWords = 64
    static let remoteStride = bitmapWords * 8

    let pageSize: Int
    let slabsPerArena: Int
    let descriptorsPerPage: Int
    let remoteOffset: Int
    let slabsOffset: Int
    let arenaBytes: Int

    init(pageSize: Int, slabsPerArena: Int) {
        self.pageSize = pageSize
        self.slabsPerArena = slabsPerArena
        descriptorsPerPage = pageSize / Self.descriptorStride
        let descriptorPages = (slabsPerArena + descriptorsPerPage - 1) / descriptorsPerPage
        remoteOffset = descriptorPages * pageSize
        let remoteBytes = slabsPerArena * Self.remoteStride
        slabsOffset = remoteOffset + (remoteBytes + pageSize - 1) / pageSize * pageSize
        arenaBytes = slabsOffset + slabsPerArena * Self.slabSize
    }

    /// Whether a heap with this page size can hold this geometry's pages.
    static func validate(pageSize: Int, slabsPerArena: Int) -> String? {
        guard pageSize >= descriptorStride, pageSize <= slabSize, pageSize & (pageSize - 1) == 0 else {
            return "the heap's page size \(pageSize) must be a power of two between \(descriptorStride) and \(slabSize)"
        }
        guard (1...4096).contains(slabsPerArena) else { return "slabs per arena \(slabsPerArena) is not in 1...4096" }
        return nil
    }

    func descriptorOffset(slab: Int) -> Int {
        (slab / descriptorsPerPage) * pageSize + (slab % descriptorsPerPage) * Self.descriptorStride
    }

    func remoteBitmapOffset(slab: Int) -> Int { remoteOffset + slab * Self.remoteStride }

    func slabOffset(slab: Int) -> Int { slabsOffset + slab << Self.slabShift }
}

/// The size classes of small blocks: 16-byte steps to 128, then four classes per doubling to
/// 8 KiB (a worst-case internal waste of 25%, 12.5% on average). Every class is a multiple of 16,
/// so blocks are 16-byte aligned.
enum SizeClasses {
    static let sizes: [Int] = [
        16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512,
        640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192,
    ]
    static let count = sizes.count
    /// The largest small block; larger ones are committed one by one (`Member.allocate`).
    static let maxSmall = 8192

    /// The class of a request, by its size in 16-byte granules (index 1 ... 512).
    private static let byGranule: [UInt8] = {
        var table = [UInt8](repeating: 0, count: maxSmall / 16 + 1)
        var c = 0
        for granule in 1...(maxSmall / 16) {
            while sizes[c] < granule * 16 { c += 1 }
            table[granule] = UInt8(c)
        }
        return table
    }()

    /// The class for `byteCount` (1 ... maxSmall).
    @inline(__always)
    static func index(for byteCount: Int) -> Int { Int(byGranule[(byteCount + 15) >> 4]) }

    /// Blocks per 64 KiB slab for each class.
    static let capacities: [Int] = sizes.map { ArenaGeometry.slabSize / $0 }
}
