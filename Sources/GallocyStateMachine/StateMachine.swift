import GallocyCodec
import GallocyRaft

/// The deterministic state machine of one member (and of the offline log tool): the page table
/// and the heap image of one company, to which committed Raft entries are applied in log order.
/// Members that apply the same entries end with byte-identical heaps and identical page tables
/// (`canonicalDigest()`).
///
/// What each entry does is described in docs/state-machine.md. In short: normal entries carry a
/// `Command` (`CommandCodec`); the page table decides (addresses, allocation checks, lock epochs,
/// sessions) and the heap image holds the bytes. The heap changes only after the page table has
/// committed the entry's transaction, and only with what was checked inside it, so a rejected
/// entry changes neither.
///
/// Determinism: applying reads nothing but the entry and the current state (no clock, no
/// randomness, no iteration over unordered collections).
///
/// Ownership: one thread or actor at a time (it is not `Sendable`, like its page table).
package final class StateMachine {
    /// The company whose page table rows and heap this state machine holds.
    package let company: Company
    /// The page table. Replaced as a whole by `restore(from:)`: look it up again afterwards.
    package private(set) var pageTable: PageTable
    /// The heap, once a bootstrap entry (or a snapshot) has given its settings.
    package private(set) var heap: HeapImage?
    /// The index of the last entry applied (0 before the first).
    package private(set) var appliedIndex: UInt64 = 0
    /// Makes the heap when the bootstrap entry is applied (or a snapshot restored into a state
    /// machine without a heap).
    package let makeHeap: HeapFactory

    /// Makes the heap image for the bootstrap settings: by default an anonymous mapping the
    /// image owns; the runtime passes one that wraps its memfd's writable alias.
    package typealias HeapFactory = (ClusterSettings) throws(StateMachineError) -> HeapImage

    /// An empty state machine: no settings, no heap, nothing applied.
    package init(
        company: Company = 0,
        makeHeap: @escaping HeapFactory = { settings throws(StateMachineError) in try HeapImage(settings: settings) }
    ) throws(StateMachineError) {
        self.company = company
        self.makeHeap = makeHeap
        self.pageTable = try PageTable()
    }

    /// The cluster settings, once bootstrapped.
    package var settings: ClusterSettings? { pageTable.settings(company: company) }

    // MARK: Applying

    /// What the heap does once the page table has committed an entry: computed inside the page
    /// table's transaction (where it can still turn into a rejection), performed after it.
    private enum HeapEffect {
        case none
        case create(HeapImage)
        case write([PageWrite])
        case zero(address: UInt64, length: UInt64)
        case store(word: UInt64, address: UInt64)
    }

    /// Applies one committed entry. Its index must be above `appliedIndex` (gaps are allowed, for
    /// a log that starts after a snapshot).
    ///
    /// - A normal entry with data is decoded as a `Command` and applied (see the type's doc). Data
    ///   that does not decode is `.rejected(.malformedCommand)`, and a command of another company
    ///   `.rejected(.invalidArgument)`: a committed entry never stops the state machine.
    /// - An empty normal entry (a new leader's) and a membership change are `.noop`.
    ///
    /// Every entry advances `appliedIndex` and the page table's applied index. Throws only for
    /// failures of the machinery (an index out of order, SQLite, mapping the heap); then nothing
    /// changed.
    package func apply(_ entry: Entry) throws(StateMachineError) -> AppliedEntry {
        guard entry.index > appliedIndex else {
            throw StateMachineError(
                .indexOutOfOrder,
                "entry \(entry.index) applied after entry \(appliedIndex); apply each index once, in order")
        }
        var command: Command?
        let result: ApplyResult
        switch entry.kind {
        case .confChange:
            result = try applyNoop(index: entry.index)
        case .normal where entry.data.isEmpty:
            result = try applyNoop(index: entry.index)
        case .normal:
            do {
                command = try CommandCodec.decode(entry.data)
            } catch {
                _ = try applyNoop(index: entry.index)
                appliedIndex = entry.index
                return AppliedEntry(
                    index: entry.index, term: entry.term, command: nil,
                    result: .rejected(Rejection(.malformedCommand, "entry \(entry.index) does not decode: \(error)")))
            }
            result = try applyCommand(command.unsafelyUnwrapped, index: entry.index)
        }
        return AppliedEntry(index: entry.index, term: entry.term, command: command, result: result)
    }

    /// Opens a batch of entries: the page table applies them in one SQLite transaction (see
    /// `PageTable.beginBatch()`); each entry still applies, or is rejected, on its own, and the
    /// heap changes entry by entry as without a batch. `endBatch()` closes it; a restore ends it.
    package func beginBatch() throws(StateMachineError) { try pageTable.beginBatch() }

    /// Closes the batch that `beginBatch()` opened. If the page table cannot commit it, it throws
    /// and the page table is behind the heap: the state machine must not be used further.
    package func endBatch() throws(StateMachineError) { try pageTable.endBatch() }

    /// Applies one committed command at log `index` (what `apply(_:)` does with a normal entry
    /// once decoded; for tests and tools that hold commands rather than entries).
    package func apply(_ command: Command, index: UInt64) throws(StateMachineError) -> ApplyResult {
        guard index > appliedIndex else {
            throw StateMachineError(
                .indexOutOfOrder, "entry \(index) applied after entry \(appliedIndex); apply each index once, in order")
        }
        return try applyCommand(command, index: index)
    }

    private func applyNoop(index: UInt64) throws(StateMachineError) -> ApplyResult {
        let result = try pageTable.apply(Command(company: company, body: .noop), index: index)
        appliedIndex = index
        return result
    }

    private func applyCommand(_ command: Command, index: UInt64) throws(StateMachineError) -> ApplyResult {
        guard command.company == company else {
            // Still a committed entry: it advances the applied index like a no-op.
            _ = try applyNoop(index: index)
            return .rejected(
                Rejection(
                    .invalidArgument,
                    "command of company \(command.company); this state machine holds company \(company)"))
        }
        var effect = HeapEffect.none
        pageTable.leaseEffects = []
        let result = try pageTable.apply(command, index: index) { (outcome) throws(StateMachineError) -> ApplyResult in
            try self.decide(command.body, outcome: outcome, effect: &effect)
        }
        let leaseEffects = result.isApplied ? pageTable.leaseEffects : []
        pageTable.leaseEffects = []
        if leaseEffects.isEmpty {
            try perform(effect)
        } else if case .free = command.body {
            // A holder's unpublished writes go before the freed bytes are zeroed.
            heap?.leaseObserver?.applyLeaseEffects(leaseEffects)
            try perform(effect)
        } else {
            // A release's diff is written before the page changes hands.
            try perform(effect)
            heap?.leaseObserver?.applyLeaseEffects(leaseEffects)
        }
        appliedIndex = index
        return result
    }

    /// Called inside the page table's transaction with its outcome, only when the command is
    /// really performed (not for a retried request): checks what the heap must check, records
    /// what it must do in `effect`, and returns the command's final result.
    private func decide(_ body: CommandBody, outcome: ApplyResult, effect: inout HeapEffect) throws(StateMachineError)
        -> ApplyResult
    {
        switch (body, outcome) {
        case (.bootstrap(let settings), .bootstrapped):
            if let heap {
                guard heap.settings == settings else {
                    throw StateMachineError(
                        .invalidArgument, "the heap was made for \(heap.settings), the bootstrap entry says \(settings)"
                    )
                }
            } else {
                // Settings the page table accepts but no image can hold are refused alike on
                // every member; a heap that cannot be mapped here (a local failure) throws and
                // leaves the bootstrap unapplied.
                if let problem = HeapImage.problem(with: settings) {
                    return .rejected(Rejection(.invalidSettings, problem))
                }
                effect = .create(try makeHeap(settings))
            }
            return outcome
        case (.write(_, let pages, _, _), .written):
            let heap = try requireHeap()
            do {
                try heap.validate(pages)
            } catch {
                // The page table has already checked the page numbers; a diff that does not
                // decompress or fit its page rejects the whole write on every member alike.
                return .rejected(Rejection(.malformedCommand, error.message))
            }
            effect = .write(pages)
            return outcome
        case (.allocIn(let size, _, let mode), .allocated(let address)):
            let settings = try requireHeap().settings
            let extent = mode == .sequential ? PageTable.roundedToPages(size, settings: settings) : (size + 7) & ~7
            effect = .zero(address: address, length: extent)
            return outcome
        case (.leaseRelease(let page, _, _, let diff, _), .lease):
            guard !diff.isEmpty else { return outcome }
            let heap = try requireHeap()
            let pages = [PageWrite(page: page, diff: diff)]
            do {
                try heap.validate(pages)
            } catch {
                return .rejected(Rejection(.malformedCommand, error.message))
            }
            effect = .write(pages)
            return outcome
        case (.alloc(let size, _), .allocated(let address)):
            // Free memory is zeroed when it is freed, but the page table checks writes per page,
            // so a write checked by its proposer before a racing free of its block committed
            // can still land in free bytes of a page that stays allocated. Zeroing the new
            // block makes "an allocation reads as zeros" hold regardless; it reads only pages
            // the heap has written, so a block in untouched memory costs nothing.
            effect = .zero(address: address, length: (size + 7) & ~7)
            return outcome
        case (.free, .freed(let address, let extent, _)):
            effect = .zero(address: address, length: extent)
            return outcome
        case (.atomic(let address, let op), .atomicAccepted):
            let heap = try requireHeap()
            let (ok, old, new) = try heap.atomicOutcome(address: address, op: op)
            if new != old { effect = .store(word: new, address: address) }
            return .atomic(ok: ok, old: old)
        default:
            return outcome
        }
    }

    private func perform(_ effect: HeapEffect) throws(StateMachineError) {
        switch effect {
        case .none:
            break
        case .create(let image):
            heap = image
        case .write(let pages):
            try requireHeap().applyValidated(pages)
        case .zero(let address, let length):
            try requireHeap().zero(address: address, length: length)
        case .store(let word, let address):
            try requireHeap().store(word: word, at: address)
        }
    }

    private func requireHeap() throws(StateMachineError) -> HeapImage {
        guard let heap else {
            throw StateMachineError(.notBootstrapped, "the heap does not exist: no bootstrap entry has been applied")
        }
        return heap
    }

    // MARK: Reading

    /// A copy of the `length` bytes at heap address `address`, for `GET /v1/memory`. Any range
    /// inside the heap may be read: memory that is not allocated reads as zeros (free memory is
    /// kept zero). Throws `.invalidArgument` for a range that leaves the heap and
    /// `.notBootstrapped` before there is a heap.
    package func read(address: UInt64, length: Int) throws(StateMachineError) -> [UInt8] {
        try requireHeap().read(address: address, length: length)
    }

    /// The page table digest and the heap digest (see `StateMachineDigest`).
    package func canonicalDigest() throws(StateMachineError) -> StateMachineDigest {
        StateMachineDigest(
            appliedIndex: appliedIndex, pageTable: try pageTable.digest(), heap: heap?.digest() ?? 0)
    }

    /// Replaces the page table and heap (used by `restore(from:)`).
    func replace(pageTable: PageTable, heap: HeapImage?, appliedIndex: UInt64) {
        self.pageTable = pageTable
        self.heap = heap
        self.appliedIndex = appliedIndex
    }

    /// Makes a heap for `settings` with the factory given at init.
    func makeHeapImage(_ settings: ClusterSettings) throws(StateMachineError) -> HeapImage {
        try makeHeap(settings)
    }
}
