// The application commands that a normal Raft entry carries. A command is what the state machine
// applies: every member applies the same commands in the same order and so reaches the same page
// table and heap image. Nothing here reads a clock: times that matter (lock leases) are decided
// by the leader and written into the command.

/// A company: a contiguous range of the heap replicated by its own Raft group. The first releases
/// run one company (0) over the whole heap, but every command and row carries one.
public typealias Company = UInt32

/// The cluster-wide settings fixed at bootstrap and recorded as the first entry of the log.
public struct ClusterSettings: Sendable, Hashable {
    public var clusterID: UInt64
    /// Virtual address of byte 0 of the shared heap, the same on every member.
    public var heapBase: UInt64
    public var heapSize: UInt64
    public var pageSize: UInt32

    public init(clusterID: UInt64, heapBase: UInt64, heapSize: UInt64, pageSize: UInt32) {
        self.clusterID = clusterID
        self.heapBase = heapBase
        self.heapSize = heapSize
        self.pageSize = pageSize
    }

    public var pageCount: UInt64 { pageSize == 0 ? 0 : heapSize / UInt64(pageSize) }
}

/// Identifies a client request so that a retried request is applied once: the state machine
/// remembers the highest sequence applied per session and skips (answering with the remembered
/// result) anything at or below it. Session 0 means "not deduplicated".
public struct ClientTag: Sendable, Hashable {
    public var session: UInt64
    public var sequence: UInt64

    public init(session: UInt64 = 0, sequence: UInt64 = 0) {
        self.session = session
        self.sequence = sequence
    }

    public static let none = ClientTag()
}

/// The new contents of some bytes of one page, as a page diff (see `PageDiff`).
public struct PageWrite: Sendable, Hashable {
    /// Page number within the heap (address = heapBase + page * pageSize).
    public var page: UInt64
    /// The encoded, LZ4-compressed diff.
    public var diff: PageDiff

    public init(page: UInt64, diff: PageDiff) {
        self.page = page
        self.diff = diff
    }
}

/// An operation on one 8-byte little-endian word.
public enum AtomicOp: Sendable, Hashable {
    case compareAndSwap(expect: UInt64, value: UInt64)
    case add(UInt64)
    case swap(UInt64)
}

/// The coherence mode of allocated memory, recorded per page by `CommandBody.allocIn`.
public enum AllocationMode: UInt8, Sendable, Hashable, CaseIterable {
    /// Release consistency (the default): writes are published by releases.
    case release = 0
    /// Sequential consistency through page leases: a member writes a page only while it holds
    /// the page's write lease, which is granted, revoked and expired by committed entries.
    case sequential = 1
}

/// The application commands. Raw tags are part of the log format: see `CommandCodec`.
public enum CommandBody: Sendable, Hashable {
    /// The first entry of every cluster: the settings all members must agree on.
    case bootstrap(ClusterSettings)
    /// Committed by a new leader to commit entries of earlier terms and to serve reads.
    case noop
    /// Allocate `size` bytes for `member`; the state machine picks the address deterministically.
    case alloc(size: UInt64, member: UInt64)
    /// Free the block that starts at `address`.
    case free(address: UInt64)
    /// New bytes for some pages, all visible together once applied; optionally releasing a lock
    /// in the same entry (its writes are published only if the lock is still held at `epoch`).
    case write(member: UInt64, pages: [PageWrite], releaseLock: String?, releaseEpoch: UInt64)
    /// An atomic operation on the word at `address`.
    case atomic(address: UInt64, op: AtomicOp)
    /// Grant `name` to `member` if it is free or its lease expired before `now` (leader's clock,
    /// milliseconds); the lease lasts until `now + ttlMillis`.
    case lockAcquire(name: String, member: UInt64, ttlMillis: UInt64, now: UInt64)
    /// Release `name` if it is still held at `epoch`.
    case lockRelease(name: String, epoch: UInt64)
    /// The leader observed that the lease of `name` at `epoch` ran out.
    case lockExpire(name: String, epoch: UInt64)
    /// `member` arrives at barrier `name` of `participants`; the barrier opens when the count is reached.
    ///
    /// An arrival counts once per member and generation: a member that already arrived in the
    /// barrier's current generation arriving again (a process restarted after a crash) changes
    /// nothing. Without a generation, an arrival after the barrier opened counts for the next
    /// generation; `barrierArriveAt` names the generation it means.
    case barrierArrive(name: String, participants: UInt32, member: UInt64)
    /// `member` arrives at barrier `name` of `participants` in `generation`, the generation it
    /// joined (the `generation` of the result of its first arrival, or the barrier's generation it
    /// read). Safe to repeat after a crash: if that generation already opened the result says so
    /// (`opened: true`) and nothing changes; a generation the barrier has not reached yet is
    /// rejected (`invalidArgument`); the current generation is a `barrierArrive`.
    case barrierArriveAt(name: String, participants: UInt32, member: UInt64, generation: UInt64)
    /// Point the named root `name` at `address` (0 removes it).
    case setRoot(name: String, address: UInt64)
    /// `alloc` with a coherence mode. A `.sequential` block is page-aligned and its size rounded up
    /// to whole pages (no page holds memory of both modes); its pages carry leases.
    case allocIn(size: UInt64, member: UInt64, mode: AllocationMode)
    /// `member` asks for page `page` of sequential memory: for writing (the write lease) or for
    /// reading. `now` is the wall clock in milliseconds (the leader's: it stamps requests forwarded
    /// to it); a lease granted by this entry lasts until `now + ttlMillis`, and one granted later
    /// (a handoff) until the handoff's `now` plus the same ttl.
    case leaseRequest(page: UInt64, member: UInt64, write: Bool, ttlMillis: UInt64, now: UInt64)
    /// The holder of the lease of `page` granted at log index `grant` gives it back, publishing
    /// `diff` (its writes to the page during the lease; may be empty) in the same entry; the lease
    /// passes to the next request in the same apply. Rejected (nothing published) if that lease
    /// ended already.
    case leaseRelease(page: UInt64, member: UInt64, grant: UInt64, diff: PageDiff, now: UInt64)
    /// The leader observed (by its clock, `now`) that the lease of `page` granted at `grant` ran
    /// out: the holder's unpublished writes are lost and the lease passes on.
    case leaseExpire(page: UInt64, grant: UInt64, now: UInt64)
}

/// A command with the header every command carries.
public struct Command: Sendable, Hashable {
    public var company: Company
    public var client: ClientTag
    public var body: CommandBody

    public init(company: Company = 0, client: ClientTag = .none, body: CommandBody) {
        self.company = company
        self.client = client
        self.body = body
    }
}
