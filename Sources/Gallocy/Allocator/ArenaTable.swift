/// An arena as this process knows it: where it is, whose it is, and (for this member's own) the
/// process-local hints per slab. Plain values, so that lookups copy it out of the table's lock.
struct ArenaInfo: Sendable {
    var base: UInt
    var owner: UInt64
    /// `slabsPerArena` bytes: the lowest bitmap word of each slab that may have a free bit.
    var hints: UInt
    /// `slabsPerArena` bytes: whether each slab is queued in its class's list.
    var queued: UInt

    var hintPointer: UnsafeMutablePointer<UInt8> { UnsafeMutablePointer(bitPattern: hints).unsafelyUnwrapped }
    var queuedPointer: UnsafeMutablePointer<UInt8> { UnsafeMutablePointer(bitPattern: queued).unsafelyUnwrapped }
}

/// Every arena of the directory this process has seen, sorted by address, and this member's own.
/// The local hint arrays are allocated once per arena and never freed (arenas are never given
/// back to the heap).
struct ArenaTable: Sendable {
    var sorted: [ArenaInfo] = []
    var mine: [ArenaInfo] = []
    var knownSlots: [Bool]

    init(slots: Int) { knownSlots = [Bool](repeating: false, count: slots) }

    /// The arena that contains `address`, if any.
    func find(_ address: UInt, arenaBytes: UInt) -> ArenaInfo? {
        var low = 0
        var high = sorted.count
        while low < high {
            let middle = (low + high) >> 1
            if sorted[middle].base <= address { low = middle + 1 } else { high = middle }
        }
        guard low > 0 else { return nil }
        let candidate = sorted[low - 1]
        return address - candidate.base < arenaBytes ? candidate : nil
    }

    /// Adds an arena unless one at `base` is known; returns it (the known one if there was).
    mutating func insert(base: UInt, owner: UInt64, slabs: Int, mine isMine: Bool) -> ArenaInfo {
        var low = 0
        var high = sorted.count
        while low < high {
            let middle = (low + high) >> 1
            if sorted[middle].base < base { low = middle + 1 } else { high = middle }
        }
        if low < sorted.count, sorted[low].base == base { return sorted[low] }
        let hints = UnsafeMutablePointer<UInt8>.allocate(capacity: slabs)
        hints.initialize(repeating: 0, count: slabs)
        let queued = UnsafeMutablePointer<UInt8>.allocate(capacity: slabs)
        queued.initialize(repeating: 0, count: slabs)
        let arena = ArenaInfo(
            base: base, owner: owner, hints: UInt(bitPattern: hints), queued: UInt(bitPattern: queued))
        sorted.insert(arena, at: low)
        if isMine { mine.append(arena) }
        return arena
    }
}
