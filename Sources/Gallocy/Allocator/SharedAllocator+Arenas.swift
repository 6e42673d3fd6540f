import Synchronization

// Arenas: the directory that lists them, taking a new one, and finding this member's own again.
//
// The directory is a block at the root `gallocy.allocator`: eight header words (magic, version,
// slabs per arena, slots), then one word per slot. A slot is 0 (free) or
// `owner << 32 | (page of the arena's base in the heap + 1)`, set once with a committed
// compare-and-swap and never changed: the directory alone says where every arena is and whose it
// is, so an arena needs no header, and its memory as `Member.allocate` zeroed it is an arena whose
// slabs are all empty.

extension SharedAllocator {
    func slotPointer(_ slot: Int) -> UnsafeMutablePointer<UInt64> {
        Self.raw(directoryAddress + UInt(Self.directoryHeaderBytes + 8 * slot)).assumingMemoryBound(to: UInt64.self)
    }

    func slotWord(base: UInt) -> UInt64 {
        UInt64(member.id) << 32 | UInt64((base - heapBase) / UInt(geometry.pageSize) + 1)
    }

    /// The arena that holds `address`, looking the directory over again if none is known here.
    @inline(__always)
    func arena(containing address: UInt) -> ArenaInfo? {
        let bytes = UInt(geometry.arenaBytes)
        if let found = table.withLock({ $0.find(address, arenaBytes: bytes) }) { return found }
        guard address >= heapBase, address - heapBase < UInt(member.heapSize) else { return nil }
        refreshArenas()
        return table.withLock { $0.find(address, arenaBytes: bytes) }
    }

    /// Reads the directory's slots (as this member sees them) and adds the arenas not known yet.
    func refreshArenas() {
        let slabs = geometry.slabsPerArena
        let pageSize = UInt(geometry.pageSize)
        let me = member.id
        table.withLock { table in
            for slot in 0..<directorySlots where !table.knownSlots[slot] {
                let word = slotPointer(slot).pointee
                guard word != 0 else { continue }
                let page = UInt(word & 0xFFFF_FFFF) - 1
                let owner = word >> 32
                _ = table.insert(base: heapBase + page * pageSize, owner: owner, slabs: slabs, mine: owner == me)
                table.knownSlots[slot] = true
            }
        }
    }

    /// Commits a new arena for this member and registers it in the directory. An arena whose
    /// allocation committed but whose registration did not (a crash between the two) is leaked.
    func addArena() async throws(MemberError) {
        let base = try await member.allocate(byteCount: geometry.arenaBytes)
        let address = UInt(bitPattern: base)
        let word = slotWord(base: address)
        var slot = 0
        while slot < directorySlots {
            let pointer = slotPointer(slot)
            if pointer.pointee == 0 {
                let result = try await member.compareAndSwap(pointer, expected: 0, desired: word)
                if result.exchanged {
                    let slabs = geometry.slabsPerArena
                    let me = member.id
                    table.withLock { table in
                        _ = table.insert(base: address, owner: me, slabs: slabs, mine: true)
                        table.knownSlots[slot] = true
                    }
                    arenasCreated.add(1, ordering: .relaxed)
                    refreshArenas()
                    return
                }
            }
            slot += 1
        }
        try? await member.free(base)
        throw MemberError(.outOfSpace, "the allocator's directory is full (\(directorySlots) arenas)")
    }

    /// Rebuilds this process's lists from the heap (on attach, and after a release of this
    /// process was undone): every slab of this member's arenas that holds a class gets its count
    /// from its bitmap and is queued in its class, or is emptied if no bit is set.
    func rebuildLocalState() {
        for lane in lanes {
            lane.state.withLock { $0 = SizeClassState() }
        }
        let mine = table.withLock { $0.mine }
        for arena in mine {
            for slab in 0..<geometry.slabsPerArena {
                let descriptor = descriptorAddress(arena, slab)
                arena.hintPointer[slab] = 0
                arena.queuedPointer[slab] = 0
                let field = Int(Self.classField(descriptor))
                if field == 0 { continue }
                guard field <= SizeClasses.count else {
                    anomalies.add(1, ordering: .relaxed)
                    continue
                }
                let sizeClass = field - 1
                let population = Self.population(descriptor, capacity: SizeClasses.capacities[sizeClass])
                lanes[sizeClass].state.withLock { lane in
                    Self.setCount(descriptor, population)
                    if population == 0 {
                        pool.withLock { _ in Self.setClassField(descriptor, 0) }
                    } else {
                        arena.queuedPointer[slab] = 1
                        lane.partial.append(slabRef(arena, slab))
                    }
                }
            }
        }
    }
}
