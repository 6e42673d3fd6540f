import Synchronization

/// A small block as the heap records it (for checks and tools).
package struct SmallBlockRecord: Sendable, Hashable {
    package var address: UInt
    package var size: Int
    package var owner: UInt64
}

/// An arena of the directory.
package struct ArenaExtent: Sendable, Hashable {
    package var base: UInt
    package var bytes: Int
    package var owner: UInt64
}

// Read-only walks over every arena of the directory, as this member sees the heap (after an
// acquire, everything published before it).
extension SharedAllocator {
    /// Every arena registered in the directory.
    package func arenaExtents() -> [ArenaExtent] {
        refreshArenas()
        let bytes = geometry.arenaBytes
        return table.withLock { $0.sorted.map { ArenaExtent(base: $0.base, bytes: bytes, owner: $0.owner) } }
    }

    /// Every small block that is allocated: its allocation bit set and its remote-free bit clear.
    package func allocatedSmallBlocks() -> [SmallBlockRecord] {
        refreshArenas()
        let arenas = table.withLock { $0.sorted }
        var blocks: [SmallBlockRecord] = []
        for arena in arenas {
            for slab in 0..<geometry.slabsPerArena {
                let descriptor = descriptorAddress(arena, slab)
                let field = Int(Self.classField(descriptor))
                guard field >= 1, field <= SizeClasses.count else { continue }
                let size = SizeClasses.sizes[field - 1]
                let capacity = SizeClasses.capacities[field - 1]
                let words = Self.bitmap(descriptor)
                let blocksBase = arena.base + UInt(geometry.slabOffset(slab: slab))
                for w in 0..<((capacity + 63) >> 6) {
                    var bits = words[w] & ~remoteWord(arena, slab: slab, word: w).pointee
                    while bits != 0 {
                        let bit = bits.trailingZeroBitCount
                        bits &= bits - 1
                        let index = w << 6 | bit
                        guard index < capacity else { break }
                        blocks.append(
                            SmallBlockRecord(address: blocksBase + UInt(index * size), size: size, owner: arena.owner))
                    }
                }
            }
        }
        return blocks
    }

    /// Whether the block at `pointer` is allocated (bit set, no remote free pending); nil if it
    /// is not a small block of an arena.
    package func isAllocated(_ pointer: UnsafeRawPointer) -> Bool? {
        let address = UInt(bitPattern: pointer)
        guard let arena = arena(containing: address), let block = try? locate(address, in: arena) else { return nil }
        let w = block.index >> 6
        let mask: UInt64 = 1 << UInt64(block.index & 63)
        return Self.bitmap(block.descriptor)[w] & mask != 0
            && remoteWord(arena, slab: block.slab, word: w).pointee & mask == 0
    }

    /// Remote frees set in this member's arenas and not taken back yet.
    package func pendingRemoteFrees() -> Int {
        let mine = table.withLock { $0.mine }
        var total = 0
        for arena in mine {
            for slab in 0..<geometry.slabsPerArena {
                for w in 0..<ArenaGeometry.bitmapWords {
                    total += remoteWord(arena, slab: slab, word: w).pointee.nonzeroBitCount
                }
            }
        }
        return total
    }
}
