import GallocyRuntime
import Synchronization

// Frees across members, and refilling.
//
// A member may not change another member's bitmap with plain stores: the owner changes the same
// words without a lock, and two releases that carry the same bytes end with the later one's
// bytes (docs/consistency.md), which would lose one of the two changes. So each slab has a second
// bitmap, its remote-free bitmap, changed only by committed atomics, which apply in log order on
// every member:
//
// - a non-owner sets the block's bit with compare-and-swap (after publishing its own writes);
// - the owner takes a whole word with a swap to 0 and clears those blocks' allocation bits with
//   plain stores (published by its next release).
//
// A block is thus taken back exactly once: a swap is committed, and a crash of the owner between
// the swap and its next release loses the clearing stores, which leaks those blocks (their
// allocation bits stay set, their remote bits are gone); it never frees one twice.

extension SharedAllocator {
    func remoteWord(_ arena: ArenaInfo, slab: Int, word: Int) -> UnsafeMutablePointer<UInt64> {
        Self.raw(arena.base + UInt(geometry.remoteBitmapOffset(slab: slab) + 8 * word))
            .assumingMemoryBound(to: UInt64.self)
    }

    /// Frees another member's block: publishes this process's writes, then sets the block's
    /// remote-free bit (a committed compare-and-swap, repeated while other bits of the word change).
    func freeRemotely(_ address: UInt, in arena: ArenaInfo) async throws(MemberError) {
        let block = try locate(address, in: arena)
        let w = block.index >> 6
        let mask: UInt64 = 1 << UInt64(block.index & 63)
        guard Self.bitmap(block.descriptor)[w] & mask != 0 else {
            throw MemberError(.notAllocated, "0x\(String(address, radix: 16)) is not an allocated block")
        }
        try await member.commit()
        let word = remoteWord(arena, slab: block.slab, word: w)
        var expected = word.pointee & ~mask
        while true {
            let result = try await member.compareAndSwap(word, expected: expected, desired: expected | mask)
            if result.exchanged { break }
            if result.old & mask != 0 {
                throw MemberError(.notAllocated, "0x\(String(address, radix: 16)) was freed already")
            }
            expected = result.old
        }
        remoteFreesSent.add(1, ordering: .relaxed)
    }

    /// Takes back the blocks other members freed into this member's arenas (one committed swap
    /// per bitmap word that has bits); returns how many. `allocate(byteCount:)` calls it when the
    /// arenas are full, and `attach(to:)` once.
    @discardableResult
    public func reclaimRemoteFrees() async throws(MemberError) -> Int {
        let mine = table.withLock { $0.mine }
        var total = 0
        for arena in mine {
            for slab in 0..<geometry.slabsPerArena {
                for w in 0..<ArenaGeometry.bitmapWords {
                    let word = remoteWord(arena, slab: slab, word: w)
                    guard word.pointee != 0 else { continue }
                    let bits = try await member.atomicSwap(word, 0)
                    total += settleRemoteFrees(arena, slab: slab, word: w, bits: bits)
                }
            }
        }
        if total > 0 { remoteFreesReclaimed.add(total, ordering: .relaxed) }
        return total
    }

    /// Clears the allocation bits of the blocks in `bits` (word `word` of the slab's remote-free
    /// bitmap, just swapped out).
    private func settleRemoteFrees(_ arena: ArenaInfo, slab: Int, word w: Int, bits: UInt64) -> Int {
        guard bits != 0 else { return 0 }
        let descriptor = descriptorAddress(arena, slab)
        let field = Int(Self.classField(descriptor))
        guard field >= 1, field <= SizeClasses.count else {
            anomalies.add(bits.nonzeroBitCount, ordering: .relaxed)
            return 0
        }
        let sizeClass = field - 1
        return lanes[sizeClass].state.withLock { lane -> Int in
            guard Self.classField(descriptor) == UInt32(field) else {
                anomalies.add(bits.nonzeroBitCount, ordering: .relaxed)
                return 0
            }
            let words = Self.bitmap(descriptor)
            let taken = words[w] & bits
            if taken != bits { anomalies.add((bits & ~taken).nonzeroBitCount, ordering: .relaxed) }
            guard taken != 0 else { return 0 }
            words[w] &= ~taken
            let count = Int(Self.count(descriptor))
            Self.setCount(descriptor, UInt32(max(0, count - taken.nonzeroBitCount)))
            if arena.hintPointer[slab] > UInt8(w) { arena.hintPointer[slab] = UInt8(w) }
            settleSlab(&lane, arena: arena, slab: slab, sizeClass: sizeClass)
            return taken.nonzeroBitCount
        }
    }

    /// Makes room for small blocks: once a release of this process was undone, the local lists
    /// are rebuilt from the heap; blocks freed by other members are taken back; if there were
    /// none, a new arena is committed. One refill at a time; others wait for it and retry.
    func refill() async throws(MemberError) {
        let started = refillState.withLock { state -> Bool in
            if state.busy { return false }
            state.busy = true
            return true
        }
        guard started else {
            try? await Task.sleep(for: .milliseconds(1))
            return
        }
        defer { refillState.withLock { $0.busy = false; $0.generation &+= 1 } }
        let undone = member.runtimeCounters.undone
        if undone != undoneSeen.load(ordering: .relaxed) {
            undoneSeen.store(undone, ordering: .relaxed)
            rebuildLocalState()
            return
        }
        if try await reclaimRemoteFrees() > 0 { return }
        try await addArena()
    }
}
