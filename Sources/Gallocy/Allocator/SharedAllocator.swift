import GallocyCodec
import GallocyRuntime
import Synchronization

/// The layered allocator of the shared heap (issue 6; docs/allocator.md): small blocks without a
/// consensus round.
///
/// `Member.allocate` and `Member.free` commit one Raft entry each. This layer sits on top of them:
///
/// - every member takes **arenas** (one `Member.allocate` of about 4 MiB each) and registers
///   them in a **directory** reached through the named root `gallocy.allocator`, so that any
///   member can tell which arena a block is in and whose it is, also after a restart;
/// - an arena is cut into 64 KiB **slabs**, each holding blocks of one **size class** (16 B to
///   8 KiB); an allocation bitmap per slab, **inside the shared heap**, is changed by the
///   owning member with plain stores, so that its next release publishes the bitmap together
///   with the data written into the blocks (and a crash loses both together);
/// - blocks larger than 8 KiB are committed one by one (`Member.allocate`);
/// - a block freed by another member goes back through a **remote-free bitmap** of its slab,
///   set with committed compare-and-swap; the owner takes those bits with a committed swap
///   when it runs short (`reclaimRemoteFrees()`).
///
/// ```swift
/// let allocator = try await SharedAllocator.attach(to: member)
/// let node = try await allocator.allocate(byteCount: 48)   // no consensus round, usually
/// ...
/// try await allocator.free(node)                            // from any member
/// ```
///
/// `allocateLocally(byteCount:)` and `freeLocally(_:)` are the synchronous fast paths (plain
/// memory operations under a per-class lock); they return nil / false where a consensus round is
/// needed (a new arena, a large block, another member's block), and the async `allocate(byteCount:)`
/// and `free(_:)` do that. Blocks are 16-byte aligned and **not** zeroed (like `malloc`).
///
/// Threads: any number, each having called `Member.prepareThread()`. Blocks whose pointers are
/// published must have been allocated before the release that publishes them begins (the
/// usual rule for data: see "Threads and releases" in docs/allocator.md).
public final class SharedAllocator: Sendable {
    /// How arenas are cut (used by the member that creates the directory; later members use the
    /// directory's numbers) and where the directory is.
    public struct Options: Sendable {
        /// 64 KiB slabs per arena: 63 makes arenas of about 4 MiB.
        public var slabsPerArena = 63
        /// Arenas the directory can hold.
        public var directorySlots = 1024
        /// The root that points at the directory.
        public var rootName = "gallocy.allocator"

        public init() {}
    }

    /// What this allocator has done so far (this process).
    public struct Statistics: Sendable, Equatable {
        /// Arenas of this member (registered in the directory), and created by this process.
        public var arenas: Int
        public var arenasCreated: Int
        /// Slabs of this member's arenas that hold a size class.
        public var slabsInUse: Int
        /// Blocks this process freed into other members' arenas, and blocks freed by other
        /// members that this process took back.
        public var remoteFreesSent: Int
        public var remoteFreesReclaimed: Int
        /// Blocks above the largest class, committed one by one.
        public var largeAllocations: Int
        /// Inconsistencies met and skipped (a remote free of a block that was not allocated).
        public var anomalies: Int
    }

    /// The member whose heap this is.
    public let member: Member
    let geometry: ArenaGeometry
    let directoryAddress: UInt
    let directorySlots: Int
    let heapBase: UInt

    let table: Mutex<ArenaTable>
    let lanes: [SizeClassLane]
    /// Slabs change hands (empty <-> a class) under this lock; order: a lane, then the pool, then
    /// the table.
    let pool = Mutex(())
    let refillState = Mutex(RefillState())

    let arenasCreated = Atomic<Int>(0)
    let remoteFreesSent = Atomic<Int>(0)
    let remoteFreesReclaimed = Atomic<Int>(0)
    let largeAllocations = Atomic<Int>(0)
    let anomalies = Atomic<Int>(0)
    /// The runtime's count of undone releases when the local state was last rebuilt.
    let undoneSeen = Atomic<Int>(0)

    static let magic: UInt64 = 0x4741_4C4C_4F43_4152  // "GALLOCAR"
    static let version: UInt64 = 1
    static let directoryHeaderBytes = 64

    private init(member: Member, geometry: ArenaGeometry, directory: UInt, slots: Int) {
        self.member = member
        self.geometry = geometry
        self.directoryAddress = directory
        self.directorySlots = slots
        self.heapBase = UInt(bitPattern: member.heapBase)
        self.table = Mutex(ArenaTable(slots: slots))
        self.lanes = (0..<SizeClasses.count).map { _ in SizeClassLane() }
    }

    /// Attaches this member to the cluster's allocator: finds (or creates) the directory through
    /// its root, finds this member's arenas again (after a restart: the blocks its releases
    /// published are allocated, those it never published are free), and takes back the blocks
    /// other members freed into them. Creating the directory is a release (`root(named:orCreate:)`).
    public static func attach(to member: Member, options: Options = Options()) async throws(MemberError)
        -> SharedAllocator
    {
        Member.prepareThread()
        let pageSize = Int(member.settings.pageSize)
        if let problem = ArenaGeometry.validate(pageSize: pageSize, slabsPerArena: options.slabsPerArena) {
            throw MemberError(.invalidArgument, problem)
        }
        guard member.id < 1 << 32 else {
            throw MemberError(.invalidArgument, "the allocator records owners below 2^32; member id \(member.id)")
        }
        guard (1...65_536).contains(options.directorySlots) else {
            throw MemberError(.invalidArgument, "directory slots \(options.directorySlots) is not in 1...65536")
        }
        let bytes = directoryHeaderBytes + 8 * options.directorySlots
        let slabs = options.slabsPerArena
        let slots = options.directorySlots
        let directory = try await member.root(named: options.rootName, orCreate: bytes) { raw in
            let words = raw.assumingMemoryBound(to: UInt64.self)
            words[0] = magic
            words[1] = version
            words[2] = UInt64(slabs)
            words[3] = UInt64(slots)
        }
        let header = directory.assumingMemoryBound(to: UInt64.self)
        guard header[0] == magic, header[1] == version else {
            throw MemberError(
                .invalidArgument,
                "root \(options.rootName) does not point at an allocator directory (version \(version))")
        }
        let storedSlabs = Int(header[2])
        let storedSlots = Int(header[3])
        if let problem = ArenaGeometry.validate(pageSize: pageSize, slabsPerArena: storedSlabs) {
            throw MemberError(.invalidArgument, "the allocator directory: \(problem)")
        }
        let allocator = SharedAllocator(
            member: member, geometry: ArenaGeometry(pageSize: pageSize, slabsPerArena: storedSlabs),
            directory: UInt(bitPattern: directory), slots: storedSlots)
        allocator.undoneSeen.store(member.runtimeCounters.undone, ordering: .relaxed)
        allocator.refreshArenas()
        allocator.rebuildLocalState()
        _ = try await allocator.reclaimRemoteFrees()
        return allocator
    }

    // MARK: - Allocation

    /// The largest block served from arenas; larger ones are committed one by one.
    public static let largestSmallBlock = SizeClasses.maxSmall

    /// Allocates `byteCount` bytes (16-byte aligned, not zeroed) without a consensus round, or
    /// returns nil when that is not possible: the block is larger than `largestSmallBlock`, or
    /// this member's arenas have no room left for its class (`allocate(byteCount:)` takes a new
    /// arena or takes back remotely freed blocks). Plain memory operations under the class's lock.
    public func allocateLocally(byteCount: Int) throws(MemberError) -> UnsafeMutableRawPointer? {
        guard byteCount > 0 else { throw MemberError(.invalidArgument, "allocate of \(byteCount) bytes") }
        guard byteCount <= SizeClasses.maxSmall else { return nil }
        let sizeClass = SizeClasses.index(for: byteCount)
        let address = lanes[sizeClass].state.withLock { lane in self.take(&lane, sizeClass: sizeClass) }
        return UnsafeMutableRawPointer(bitPattern: address)
    }

    /// Allocates `byteCount` bytes of shared memory (16-byte aligned, not zeroed). Small blocks
    /// come from this member's arenas with plain stores (no consensus round) unless the arenas
    /// are full: then blocks freed by other members are taken back, or a new arena is committed.
    /// Blocks above `largestSmallBlock` are committed (`Member.allocate`, zeroed, page-aligned
    /// from a page up). Throws `.outOfSpace` when the heap has no room for a new arena or block.
    public func allocate(byteCount: Int) async throws(MemberError) -> UnsafeMutableRawPointer {
        guard byteCount > SizeClasses.maxSmall else {
            while true {
                if let block = try allocateLocally(byteCount: byteCount) { return block }
                try await refill()
            }
        }
        let block = try await member.allocate(byteCount: byteCount)
        largeAllocations.add(1, ordering: .relaxed)
        return block
    }

    // MARK: - Freeing

    /// Frees a block of this member's arenas without a consensus round (plain stores, published
    /// by the next release). Returns false, doing nothing, when the block is another member's or
    /// large (`free(_:)` does those). Throws `.notAllocated` for a block that is not allocated (a
    /// double free) and `.invalidArgument` for a pointer that is not the start of a block.
    public func freeLocally(_ pointer: UnsafeMutableRawPointer) throws(MemberError) -> Bool {
        let address = UInt(bitPattern: pointer)
        guard let arena = arena(containing: address), arena.owner == member.id else { return false }
        let block = try locate(address, in: arena)
        let outcome = lanes[block.sizeClass].state.withLock { lane in
            self.release(&lane, block: block, arena: arena)
        }
        guard outcome else {
            throw MemberError(.notAllocated, "\(pointer) is not an allocated block (freed twice?)")
        }
        return true
    }

    /// Frees `pointer`, allocated by `allocate(byteCount:)` on any member. A block of this
    /// member's arenas is freed with plain stores. Another member's block: this process's writes
    /// are published first (`commit()`: they must not land on the block after its owner reuses
    /// it), then the block's bit is set in its slab's remote-free bitmap with a committed
    /// compare-and-swap; the owner takes it back later. A large block: `commit()`, then
    /// `Member.free`.
    public func free(_ pointer: UnsafeMutableRawPointer) async throws(MemberError) {
        if try freeLocally(pointer) { return }
        let address = UInt(bitPattern: pointer)
        if let arena = arena(containing: address) {
            try await freeRemotely(address, in: arena)
        } else {
            try await member.commit()
            try await member.free(pointer)
        }
    }

    /// The usable size of the block at `pointer` (its size class), or nil if it is not a small
    /// block of an arena.
    public func usableSize(of pointer: UnsafeRawPointer) -> Int? {
        let address = UInt(bitPattern: pointer)
        guard let arena = arena(containing: address), let block = try? locate(address, in: arena) else { return nil }
        return SizeClasses.sizes[block.sizeClass]
    }

    public var statistics: Statistics {
        let mine = table.withLock { $0.mine }
        var slabs = 0
        for arena in mine {
            for slab in 0..<geometry.slabsPerArena where descriptorClass(arena, slab) != 0 { slabs += 1 }
        }
        return Statistics(
            arenas: mine.count, arenasCreated: arenasCreated.load(ordering: .relaxed), slabsInUse: slabs,
            remoteFreesSent: remoteFreesSent.load(ordering: .relaxed),
            remoteFreesReclaimed: remoteFreesReclaimed.load(ordering: .relaxed),
            largeAllocations: largeAllocations.load(ordering: .relaxed), anomalies: anomalies.load(ordering: .relaxed))
    }
}

/// A 64 KiB slab that serves one size class, by the addresses of its parts (plain values, so
/// that the fast path neither retains nor releases anything).
struct SlabRef: Sendable {
    var descriptor: UInt
    var blocks: UInt
    /// This process's hint (the lowest bitmap word that may have a free bit) and whether the slab
    /// is queued in its class's list of slabs with room; guarded by the class's lock.
    var hint: UInt
    var queued: UInt
}

/// One size class's slabs in this process: the slab it allocates from and the others that have
/// room (a stack; an entry whose `queued` flag is false is stale and skipped).
struct SizeClassState: Sendable {
    var current: SlabRef?
    var partial: [SlabRef] = []
}

final class SizeClassLane: Sendable {
    let state = Mutex(SizeClassState())
}

struct RefillState: Sendable {
    var busy = false
    var generation: UInt64 = 0
}
