import Synchronization

// The fast paths: taking a block from a slab and giving it back, under the class's lock, with
// plain loads and stores into the shared heap (the descriptor's class, count and bitmap). The
// order of the stores matters for what a release may publish (docs/allocator.md, "Crashes"): a
// release diffs each page whole, so it publishes, per page, a prefix of each thread's stores to
// it. A slab's class is stored before its first bit and after its last bit is cleared, on the
// same page as the bitmap: a published bit always has its class.

/// A block located in its arena: the slab's descriptor, its class and its index in the slab.
struct BlockLocation: Sendable {
    var slab: Int
    var descriptor: UInt
    var sizeClass: Int
    var index: Int
}

extension SharedAllocator {
    @inline(__always)
    static func raw(_ address: UInt) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: address).unsafelyUnwrapped
    }

    @inline(__always)
    static func bitmap(_ descriptor: UInt) -> UnsafeMutablePointer<UInt64> {
        raw(descriptor + UInt(ArenaGeometry.descriptorHeader)).assumingMemoryBound(to: UInt64.self)
    }

    @inline(__always)
    static func classField(_ descriptor: UInt) -> UInt32 { raw(descriptor).load(as: UInt32.self) }

    @inline(__always)
    static func setClassField(_ descriptor: UInt, _ value: UInt32) { raw(descriptor).storeBytes(of: value, as: UInt32.self) }

    @inline(__always)
    static func count(_ descriptor: UInt) -> UInt32 { raw(descriptor).load(fromByteOffset: 4, as: UInt32.self) }

    @inline(__always)
    static func setCount(_ descriptor: UInt, _ value: UInt32) {
        raw(descriptor).storeBytes(of: value, toByteOffset: 4, as: UInt32.self)
    }

    /// Allocated blocks by the bitmap (the count is derived from it).
    static func population(_ descriptor: UInt, capacity: Int) -> UInt32 {
        let words = bitmap(descriptor)
        var total = 0
        for w in 0..<((capacity + 63) >> 6) { total += words[w].nonzeroBitCount }
        return UInt32(total)
    }

    func descriptorAddress(_ arena: ArenaInfo, _ slab: Int) -> UInt {
        arena.base + UInt(geometry.descriptorOffset(slab: slab))
    }

    func descriptorClass(_ arena: ArenaInfo, _ slab: Int) -> UInt32 { Self.classField(descriptorAddress(arena, slab)) }

    func slabRef(_ arena: ArenaInfo, _ slab: Int) -> SlabRef {
        SlabRef(
            descriptor: descriptorAddress(arena, slab), blocks: arena.base + UInt(geometry.slabOffset(slab: slab)),
            hint: arena.hints + UInt(slab), queued: arena.queued + UInt(slab))
    }

    /// Where `address` is in `arena`; throws for an address that is not the start of a block of a
    /// slab in use.
    func locate(_ address: UInt, in arena: ArenaInfo) throws(MemberError) -> BlockLocation {
        let offset = Int(address - arena.base) - geometry.slabsOffset
        guard offset >= 0 else {
            throw MemberError(.invalidArgument, "0x\(String(address, radix: 16)) is inside an arena's header")
        }
        let slab = offset >> ArenaGeometry.slabShift
        let descriptor = descriptorAddress(arena, slab)
        let field = Int(Self.classField(descriptor))
        guard field >= 1, field <= SizeClasses.count else {
            throw MemberError(.notAllocated, "0x\(String(address, radix: 16)) is in an empty slab")
        }
        let sizeClass = field - 1
        let within = offset & (ArenaGeometry.slabSize - 1)
        let size = SizeClasses.sizes[sizeClass]
        let index = within / size
        guard index * size == within, index < SizeClasses.capacities[sizeClass] else {
            throw MemberError(.invalidArgument, "0x\(String(address, radix: 16)) is not the start of a block")
        }
        return BlockLocation(slab: slab, descriptor: descriptor, sizeClass: sizeClass, index: index)
    }

    // MARK: - Taking a block (the class's lock is held)

    /// A block of `sizeClass` from the lane's slabs, else from an empty slab of this member's
    /// arenas; 0 when there is none.
    func take(_ lane: inout SizeClassState, sizeClass: Int) -> UInt {
        let size = SizeClasses.sizes[sizeClass]
        let capacity = SizeClasses.capacities[sizeClass]
        while true {
            if let slab = lane.current {
                let block = Self.takeBlock(slab, size: size, capacity: capacity)
                if block != 0 { return block }
                lane.current = nil
            }
            while let slab = lane.partial.popLast() {
                let queued = Self.raw(slab.queued).assumingMemoryBound(to: UInt8.self)
                guard queued.pointee != 0 else { continue }
                queued.pointee = 0
                guard Self.classField(slab.descriptor) == UInt32(sizeClass + 1) else { continue }
                lane.current = slab
                break
            }
            if lane.current != nil { continue }
            guard let fresh = acquireEmptySlab(sizeClass: sizeClass) else { return 0 }
            lane.current = fresh
        }
    }

    @inline(__always)
    static func takeBlock(_ slab: SlabRef, size: Int, capacity: Int) -> UInt {
        let descriptor = slab.descriptor
        let count = Self.count(descriptor)
        guard Int(count) < capacity else { return 0 }
        let words = bitmap(descriptor)
        let hint = raw(slab.hint).assumingMemoryBound(to: UInt8.self)
        let wordCount = (capacity + 63) >> 6
        var w = Int(hint.pointee)
        while w < wordCount {
            let value = words[w]
            if value != ~0 {
                let bit = (~value).trailingZeroBitCount
                let index = w << 6 | bit
                guard index < capacity else { break }
                words[w] = value | (1 << UInt64(bit))
                setCount(descriptor, count + 1)
                hint.pointee = UInt8(w)
                return slab.blocks + UInt(index * size)
            }
            w += 1
        }
        // The count said there was room and the bitmap says there is none (state undone by a
        // rejected release, say): the bitmap is the truth.
        setCount(descriptor, population(descriptor, capacity: capacity))
        return 0
    }

    /// Gives an empty slab of this member's arenas to `sizeClass` (its class is stored before any
    /// of its bits), or nil if every slab is in use.
    func acquireEmptySlab(sizeClass: Int) -> SlabRef? {
        pool.withLock { _ -> SlabRef? in
            let mine = table.withLock { $0.mine }
            for arena in mine {
                for slab in 0..<geometry.slabsPerArena {
                    let descriptor = descriptorAddress(arena, slab)
                    guard Self.classField(descriptor) == 0 else { continue }
                    guard Self.population(descriptor, capacity: ArenaGeometry.bitmapWords * 64) == 0 else {
                        // Bits without a class: never published in that order; leave the slab.
                        anomalies.add(1, ordering: .relaxed)
                        continue
                    }
                    Self.setClassField(descriptor, UInt32(sizeClass + 1))
                    Self.setCount(descriptor, 0)
                    arena.hintPointer[slab] = 0
                    arena.queuedPointer[slab] = 0
                    return slabRef(arena, slab)
                }
            }
            return nil
        }
    }

    // MARK: - Giving a block back (the class's lock is held)

    /// Clears the block's bit; false if it was not set. Keeps the slab in its class's list, or
    /// gives it back to the arena once it is empty.
    func release(_ lane: inout SizeClassState, block: BlockLocation, arena: ArenaInfo) -> Bool {
        let descriptor = block.descriptor
        guard Self.classField(descriptor) == UInt32(block.sizeClass + 1) else { return false }
        let words = Self.bitmap(descriptor)
        let w = block.index >> 6
        let mask: UInt64 = 1 << UInt64(block.index & 63)
        guard words[w] & mask != 0 else { return false }
        words[w] &= ~mask
        let count = Self.count(descriptor)
        Self.setCount(descriptor, count > 0 ? count - 1 : 0)
        if arena.hintPointer[block.slab] > UInt8(w) { arena.hintPointer[block.slab] = UInt8(w) }
        settleSlab(&lane, arena: arena, slab: block.slab, sizeClass: block.sizeClass)
        return true
    }

    /// After blocks of a slab were freed: an empty slab that is not the one being allocated from
    /// goes back to the arena (its class cleared after its last bit), any other is queued.
    func settleSlab(_ lane: inout SizeClassState, arena: ArenaInfo, slab: Int, sizeClass: Int) {
        let descriptor = descriptorAddress(arena, slab)
        if lane.current?.descriptor == descriptor { return }
        if Self.count(descriptor) == 0,
            Self.population(descriptor, capacity: SizeClasses.capacities[sizeClass]) == 0
        {
            arena.queuedPointer[slab] = 0
            pool.withLock { _ in Self.setClassField(descriptor, 0) }
            return
        }
        if arena.queuedPointer[slab] == 0 {
            arena.queuedPointer[slab] = 1
            lane.partial.append(slabRef(arena, slab))
        }
    }
}
