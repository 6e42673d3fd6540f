import GallocyCodec
import GallocyRaft
import Testing

@testable import GallocyStateMachine

/// A state machine with its own log: `apply` wraps commands in entries at the next index.
final class Harness {
    let machine: StateMachine
    private(set) var nextIndex: UInt64 = 1

    init(settings: ClusterSettings? = testSettings) throws {
        machine = try StateMachine()
        if let settings {
            let result = try apply(.bootstrap(settings))
            precondition(result == .bootstrapped, "bootstrap of the test member failed: \(result)")
        }
    }

    /// Applies `body` as an encoded normal entry.
    @discardableResult
    func apply(_ body: CommandBody, client: ClientTag = .none) throws -> ApplyResult {
        try apply(entry: Command(client: client, body: body).encode()).result
    }

    /// Applies an entry with `data` (or of `kind`) at the next index.
    @discardableResult
    func apply(entry data: [UInt8], kind: Entry.Kind = .normal) throws -> StateMachine.AppliedEntry {
        let index = max(nextIndex, machine.appliedIndex + 1)
        nextIndex = index + 1
        return try machine.apply(Entry(term: 1, index: index, kind: kind, data: data))
    }

    func allocate(_ size: UInt64) throws -> UInt64 {
        let result = try apply(.alloc(size: size, member: 1))
        guard case .allocated(let address) = result else { throw TestFailure("alloc(\(size)) gave \(result)") }
        return address
    }

    /// A write of `bytes` at `address` as page diffs, split at page boundaries.
    func writeBody(_ bytes: [UInt8], at address: UInt64, member: UInt64 = 1) -> CommandBody {
        .write(member: member, pages: pageWrites(bytes, at: address), releaseLock: nil, releaseEpoch: 0)
    }

    func read(_ address: UInt64, _ length: Int) throws -> [UInt8] { try machine.read(address: address, length: length) }
}

/// The page writes that put `bytes` at `address` (raw writes, split at page boundaries).
func pageWrites(_ bytes: [UInt8], at address: UInt64, settings: ClusterSettings = testSettings) -> [PageWrite] {
    let pageSize = UInt64(settings.pageSize)
    var writes: [PageWrite] = []
    var done = 0
    while done < bytes.count {
        let offset = address - settings.heapBase + UInt64(done)
        let page = offset / pageSize
        let inPage = Int(offset % pageSize)
        let length = min(bytes.count - done, Int(pageSize) - inPage)
        writes.append(
            PageWrite(page: page, diff: PageDiff(writing: Array(bytes[done..<done + length]), atOffset: inPage)))
        done += length
    }
    return writes
}

@Suite struct StateMachineTests {
    let base = testSettings.heapBase

    @Test func bootstrapMakesTheHeapAndCommandsBeforeItAreRejected() throws {
        let member = try Harness(settings: nil)
        #expect(member.machine.heap == nil)
        #expect(throws: StateMachineError.self) { try member.read(base, 8) }
        let early = try member.apply(.alloc(size: 8, member: 1))
        #expect(early.rejection?.code == .notBootstrapped)
        #expect(try member.apply(.bootstrap(testSettings)) == .bootstrapped)
        #expect(member.machine.heap?.settings == testSettings)
        #expect(member.machine.settings == testSettings)
        #expect(try member.apply(.bootstrap(testSettings)) == .bootstrapped)
        var other = testSettings
        other.clusterID = 9
        #expect(try member.apply(.bootstrap(other)).rejection?.code == .settingsConflict)
        #expect(member.machine.appliedIndex == 4)
    }

    @Test func settingsNoImageCanHoldAreRejectedAlike() throws {
        for settings in [
            ClusterSettings(clusterID: 1, heapBase: 1 << 40, heapSize: 1 << 41, pageSize: 4096),
            ClusterSettings(clusterID: 1, heapBase: 1 << 40, heapSize: 1 << 24, pageSize: 1 << 22),
            ClusterSettings(clusterID: 1, heapBase: 1 << 40, heapSize: 1 << 32, pageSize: 8),
        ] {
            let harness = try Harness(settings: nil)
            #expect(try harness.apply(.bootstrap(settings)).rejection?.code == .invalidSettings)
            #expect(harness.machine.heap == nil)
            #expect(harness.machine.settings == nil)
            #expect(try harness.apply(.bootstrap(testSettings)) == .bootstrapped)
        }
    }

    @Test func aHeapThatCannotBeMadeLeavesTheBootstrapUnapplied() throws {
        let machine = try StateMachine(makeHeap: { settings throws(StateMachineError) in
            throw StateMachineError(.system, "no memory for \(settings.heapSize) bytes")
        })
        let entry = Entry(term: 1, index: 1, data: Command(body: .bootstrap(testSettings)).encode())
        #expect(throws: StateMachineError.self) { try machine.apply(entry) }
        #expect(machine.appliedIndex == 0)
        #expect(machine.settings == nil)
        #expect(machine.pageTable.appliedIndex() == nil)
    }

    @Test func entriesWithoutACommandAreNoopsAndGarbageIsRejected() throws {
        let member = try Harness()
        #expect(try member.apply(entry: []).result == .noop)
        #expect(try member.apply(entry: [1, 2, 3], kind: .confChange).result == .noop)
        var garbage = Command(body: .alloc(size: 8, member: 1)).encode()
        garbage[garbage.count - 1] ^= 1
        for data in [garbage, [0xFF], [1], Array(garbage.dropLast(5))] {
            let applied = try member.apply(entry: data)
            #expect(applied.result.rejection?.code == .malformedCommand)
            #expect(applied.command == nil)
        }
        #expect(member.machine.appliedIndex == 7)
        #expect(member.machine.pageTable.appliedIndex() == 7)
        #expect(try member.machine.pageTable.allocations().isEmpty)
        let other = Command(company: 3, body: .alloc(size: 8, member: 1)).encode()
        #expect(try member.apply(entry: other).result.rejection?.code == .invalidArgument)
        #expect(try member.machine.pageTable.allocations().isEmpty)
    }

    @Test func entriesMustRise() throws {
        let member = try Harness()
        #expect(throws: StateMachineError.self) {
            try member.machine.apply(Entry(term: 1, index: 1, data: Command(body: .noop).encode()))
        }
        _ = try member.machine.apply(Entry(term: 2, index: 10, data: []))
        #expect(member.machine.appliedIndex == 10)
        #expect(throws: StateMachineError.self) { try member.machine.apply(Entry(term: 2, index: 10, data: [])) }
    }

    @Test func aWriteIsVisibleOnlyWhenEveryPageIsAllocatedAndEveryDiffValid() throws {
        let member = try Harness()
        let block = try member.allocate(2 * 4096)
        let bytes = (0..<6000).map { UInt8(truncatingIfNeeded: $0 | 1) }
        let before = try member.machine.canonicalDigest()

        // The second page's diff is corrupt: nothing of the write applies, not even page one.
        var writes = pageWrites(bytes, at: block + 100)
        writes[1].diff = PageDiff(compressed: [0x10, 0x41], rawLength: 3)
        let corrupt = try member.apply(.write(member: 1, pages: writes, releaseLock: nil, releaseEpoch: 0))
        #expect(corrupt.rejection?.code == .malformedCommand)
        // A diff that runs past its page is just as invalid.
        writes[1] = PageWrite(page: writes[1].page, diff: PageDiff(writing: [1, 2, 3], atOffset: 4094))
        #expect(
            try member.apply(.write(member: 1, pages: writes, releaseLock: nil, releaseEpoch: 0)).rejection?.code
                == .malformedCommand)
        // A page that is not allocated.
        let outside = member.writeBody(bytes, at: block + 4096)
        #expect(try member.apply(outside).rejection?.code == .outsideAllocation)
        #expect(try member.read(block, 2 * 4096).allSatisfy { $0 == 0 })
        let after = try member.machine.canonicalDigest()
        #expect(after.heap == before.heap)
        #expect(try member.machine.pageTable.pages(from: 0, count: 2).allSatisfy { $0.writeCount == 0 })

        #expect(try member.apply(member.writeBody(bytes, at: block + 100)) == .written(pages: 2, releasedLock: false))
        #expect(try member.read(block + 100, 6000) == bytes)
        #expect(try member.read(block, 100).allSatisfy { $0 == 0 })
    }

    @Test func freedThenReallocatedMemoryReadsAsZeros() throws {
        let member = try Harness()
        let small = try member.allocate(24)
        let neighbour = try member.allocate(16)
        let big = try member.allocate(20_000)
        try member.apply(member.writeBody([UInt8](repeating: 0xAB, count: 24), at: small))
        try member.apply(member.writeBody([UInt8](repeating: 0xCD, count: 16), at: neighbour))
        try member.apply(member.writeBody([UInt8](repeating: 0xEF, count: 20_000), at: big))
        guard case .freed = try member.apply(.free(address: small)) else { throw TestFailure("free failed") }
        guard case .freed = try member.apply(.free(address: big)) else { throw TestFailure("free failed") }
        #expect(try member.read(small, 24).allSatisfy { $0 == 0 })
        #expect(try member.read(neighbour, 16) == [UInt8](repeating: 0xCD, count: 16))
        #expect(try member.allocate(24) == small)
        #expect(try member.allocate(20_000) == big)
        #expect(try member.read(small, 24).allSatisfy { $0 == 0 })
        #expect(try member.read(big, 20_000).allSatisfy { $0 == 0 })
        #expect(try member.apply(.free(address: small + 8)).rejection?.code == .notAllocated)
    }

    @Test func atomicsCompareAndSwapAddAndSwap() throws {
        let member = try Harness()
        let block = try member.allocate(64)
        let word = block + 8
        #expect(
            try member.apply(.atomic(address: word, op: .compareAndSwap(expect: 0, value: 7)))
                == .atomic(ok: true, old: 0))
        #expect(
            try member.apply(.atomic(address: word, op: .compareAndSwap(expect: 0, value: 9)))
                == .atomic(ok: false, old: 7))
        #expect(try member.apply(.atomic(address: word, op: .add(UInt64.max))) == .atomic(ok: true, old: 7))
        #expect(try member.apply(.atomic(address: word, op: .swap(0xFFFF_0000_0000_0001))) == .atomic(ok: true, old: 6))
        #expect(try member.read(word, 8) == [1, 0, 0, 0, 0, 0, 0xFF, 0xFF])
        #expect(
            try member.apply(.atomic(address: word, op: .add(0xFFFF))) == .atomic(ok: true, old: 0xFFFF_0000_0000_0001))
        #expect(try member.machine.heap?.word(at: word) == 0xFFFF_0000_0001_0000)
        #expect(try member.apply(.atomic(address: word + 4, op: .add(1))).rejection?.code == .misaligned)
        #expect(try member.apply(.atomic(address: block + 64, op: .add(1))).rejection?.code == .outsideAllocation)
        #expect(
            try member.apply(.atomic(address: base + testSettings.heapSize, op: .add(1))).rejection?.code
                == .outsideAllocation)
        #expect(try member.read(block + 64, 8).allSatisfy { $0 == 0 })
    }

    @Test func aRetriedAtomicReturnsTheSameAnswerAndAppliesOnce() throws {
        let member = try Harness()
        let word = try member.allocate(8)
        let add = CommandBody.atomic(address: word, op: .add(5))
        let first = try member.apply(add, client: ClientTag(session: 7, sequence: 1))
        #expect(first == .atomic(ok: true, old: 0))
        // Another client changes the word; the retry must still answer what the first apply did.
        #expect(try member.apply(.atomic(address: word, op: .add(100))) == .atomic(ok: true, old: 5))
        #expect(try member.apply(add, client: ClientTag(session: 7, sequence: 1)) == .atomic(ok: true, old: 0))
        #expect(try member.machine.heap?.word(at: word) == 105)
        let cas = CommandBody.atomic(address: word, op: .compareAndSwap(expect: 1, value: 2))
        #expect(try member.apply(cas, client: ClientTag(session: 7, sequence: 2)) == .atomic(ok: false, old: 105))
        #expect(try member.apply(cas, client: ClientTag(session: 7, sequence: 2)) == .atomic(ok: false, old: 105))
        #expect(try member.apply(add, client: ClientTag(session: 7, sequence: 1)).rejection?.code == .staleRequest)
        #expect(try member.machine.heap?.word(at: word) == 105)
        #expect(try member.machine.pageTable.session(id: 7)?.result == .atomic(ok: false, old: 105))
    }

    @Test func aRetriedWriteIsNotAppliedTwice() throws {
        let member = try Harness()
        let block = try member.allocate(16)
        let tag = ClientTag(session: 3, sequence: 1)
        #expect(
            try member.apply(member.writeBody([1, 1, 1, 1], at: block), client: tag)
                == .written(pages: 1, releasedLock: false))
        try member.apply(member.writeBody([2, 2], at: block))
        #expect(
            try member.apply(member.writeBody([1, 1, 1, 1], at: block), client: tag)
                == .written(pages: 1, releasedLock: false))
        #expect(try member.read(block, 4) == [2, 2, 1, 1])
        // A rejected write is remembered as rejected, and its retry changes nothing either.
        var bad = pageWrites([9], at: block)
        bad[0].diff = PageDiff(compressed: [0xFF], rawLength: 9)
        let badTag = ClientTag(session: 3, sequence: 2)
        let body = CommandBody.write(member: 1, pages: bad, releaseLock: nil, releaseEpoch: 0)
        #expect(try member.apply(body, client: badTag).rejection?.code == .malformedCommand)
        #expect(try member.apply(body, client: badTag).rejection?.code == .malformedCommand)
        #expect(try member.read(block, 4) == [2, 2, 1, 1])
    }

    @Test func aWriteThatReleasesAStaleLockChangesNothing() throws {
        let member = try Harness()
        let block = try member.allocate(8)
        guard
            case .lockGranted(let epoch, _) = try member.apply(
                .lockAcquire(name: "L", member: 1, ttlMillis: 100, now: 0))
        else { throw TestFailure("no grant") }
        let stale = CommandBody.write(
            member: 1, pages: pageWrites([5], at: block), releaseLock: "L", releaseEpoch: epoch + 1)
        #expect(try member.apply(stale).rejection?.code == .staleEpoch)
        #expect(try member.read(block, 1) == [0])
        let good = CommandBody.write(
            member: 1, pages: pageWrites([5], at: block), releaseLock: "L", releaseEpoch: epoch)
        #expect(try member.apply(good) == .written(pages: 1, releasedLock: true))
        #expect(try member.read(block, 1) == [5])
    }

    @Test func readsAreBoundedByTheHeapNotByAllocations() throws {
        let member = try Harness()
        #expect(try member.read(base + 4096, 16) == [UInt8](repeating: 0, count: 16))
        #expect(throws: StateMachineError.self) { try member.read(base - 1, 2) }
        #expect(throws: StateMachineError.self) { try member.read(base + testSettings.heapSize - 1, 2) }
    }

    @Test func aSnapshotRestoresTheWholeState() throws {
        let member = try Harness()
        let block = try member.allocate(10_000)
        try member.apply(member.writeBody((0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 7 + 1) }, at: block))
        try member.apply(.atomic(address: block, op: .add(3)), client: ClientTag(session: 1, sequence: 1))
        let snapshot = try member.machine.snapshot()
        let restored = try StateMachine(snapshot: snapshot)
        #expect(try restored.canonicalDigest() == member.machine.canonicalDigest())
        #expect(restored.appliedIndex == member.machine.appliedIndex)
        #expect(try restored.read(address: block, length: 10_000) == member.read(block, 10_000))
        #expect(try restored.pageTable.canonicalDump() == member.machine.pageTable.canonicalDump())
        // The retry of the atomic is still answered from the restored session.
        let retry = Command(client: ClientTag(session: 1, sequence: 1), body: .atomic(address: block, op: .add(3)))
        #expect(
            try restored.apply(retry, index: restored.appliedIndex + 1) == .atomic(ok: true, old: 0x322B_241D_160F_0801)
        )

        // A snapshot from before the bootstrap restores to no heap.
        let empty = try StateMachine()
        _ = try empty.apply(Entry(term: 1, index: 1, data: []))
        try restored.restore(from: try empty.snapshot())
        #expect(restored.heap == nil)
        #expect(restored.appliedIndex == 1)
    }

    @Test func aRestoreIntoTheSameSettingsKeepsTheHeapRegion() throws {
        let member = try Harness()
        let heap = try #require(member.machine.heap)
        let other = try Harness()
        try other.apply(other.writeBody([1, 2, 3], at: try other.allocate(8)))
        try member.machine.restore(from: try other.machine.snapshot())
        #expect(member.machine.heap === heap)
        #expect(try member.machine.canonicalDigest() == other.machine.canonicalDigest())
    }

    @Test func aDamagedSnapshotLeavesTheStateMachineAsItWas() throws {
        let source = try Harness()
        try source.apply(source.writeBody([1, 2, 3, 4], at: try source.allocate(4096)))
        let snapshot = try source.machine.snapshot()

        let member = try Harness()
        try member.apply(member.writeBody([9, 9], at: try member.allocate(64)))
        let digest = try member.machine.canonicalDigest()
        let dump = try member.machine.pageTable.canonicalDump()
        for length in stride(from: 0, to: snapshot.count, by: max(1, snapshot.count / 150)) {
            #expect(throws: StateMachineError.self) { try member.machine.restore(from: Array(snapshot[0..<length])) }
        }
        for position in stride(from: 0, to: snapshot.count, by: max(1, snapshot.count / 50)) {
            var flipped = snapshot
            flipped[position] ^= 0x04
            #expect(throws: StateMachineError.self) { try member.machine.restore(from: flipped) }
        }
        // Parts that are each intact but do not belong together: a heap of other settings.
        var otherSettings = testSettings
        otherSettings.clusterID = 99
        let foreignHeap = try HeapImage(settings: otherSettings).snapshot()
        let table = try source.machine.pageTable.snapshot()
        var writer = ByteWriter()
        writer.writeRaw(Array("GSMS".utf8))
        writer.write(UInt32(1))
        writer.write(UInt32(0))
        writer.write(source.machine.appliedIndex)
        writer.write(UInt64(table.count))
        writer.writeRaw(table)
        writer.write(true)
        writer.write(UInt64(foreignHeap.count))
        writer.writeRaw(foreignHeap)
        writer.appendChecksum()
        #expect(throws: StateMachineError.self) { try member.machine.restore(from: writer.bytes) }
        #expect(throws: StateMachineError.self) { try StateMachine(company: 1).restore(from: snapshot) }

        #expect(try member.machine.canonicalDigest() == digest)
        #expect(try member.machine.pageTable.canonicalDump() == dump)
    }

    @Test func anExternalHeapRegionIsWrittenInPlace() throws {
        let size = Int(testSettings.heapSize)
        let region = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        defer { region.deallocate() }
        region.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        let address = UInt(bitPattern: region)
        do {
            let machine = try StateMachine(makeHeap: { settings throws(StateMachineError) in
                try HeapImage(base: UnsafeMutableRawPointer(bitPattern: address).unsafelyUnwrapped, settings: settings)
            })
            _ = try machine.apply(Entry(term: 1, index: 1, data: Command(body: .bootstrap(testSettings)).encode()))
            let alloc = try machine.apply(Command(body: .alloc(size: 8, member: 1)), index: 2)
            guard case .allocated(let block) = alloc else { throw TestFailure("alloc gave \(alloc)") }
            _ = try machine.apply(Command(body: .atomic(address: block, op: .swap(0x55))), index: 3)
            #expect(region.load(fromByteOffset: Int(block - base), as: UInt8.self) == 0x55)
        }
    }
}
