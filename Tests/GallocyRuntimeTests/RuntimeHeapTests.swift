import CGallocyRuntime
import GallocyCodec
import GallocyRuntime
import GallocyStateMachine
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The runtime heap as the state machine's writer: committed entries applied to a heap that the
/// application maps too (RuntimeHeap's rules 1-3), checked against a private replica that applies
/// the same commands.
extension RuntimeSuite {
    @Suite struct RuntimeHeapTests {
        let pageSize = SharedHeap.systemPageSize

        /// Heap bases of this suite (apart from TestBase's, so that suites can grow separately).
        enum Base {
            static let replica: UInt = 0x2200_0000_0000
            static let local: UInt = 0x2210_0000_0000
            static let snapshot: UInt = 0x2220_0000_0000
            static let rejected: UInt = 0x2230_0000_0000
            static let together: UInt = 0x2240_0000_0000
            static let accepted: UInt = 0x2250_0000_0000
            static let abandoned: UInt = 0x2260_0000_0000
        }

        /// A member's state machine over a runtime heap, and a replica with a private heap.
        final class Fixture {
            let mapping: HeapMapping
            let runtime: RuntimeHeap
            let machine: StateMachine
            let replica: StateMachine
            let settings: ClusterSettings
            var index: UInt64 = 0
            let pageSize: Int
            /// The start of the one block the fixture allocates (the whole heap but a page).
            var block: UInt64 = 0

            init(base: UInt, pages: Int) throws {
                pageSize = SharedHeap.systemPageSize
                let mapping = try HeapMapping(base: base, size: pages * pageSize)
                let runtime = RuntimeHeap(mapping: mapping)
                self.mapping = mapping
                self.runtime = runtime
                settings = ClusterSettings(
                    clusterID: 7, heapBase: UInt64(base), heapSize: UInt64(pages * pageSize), pageSize: UInt32(pageSize))
                machine = try StateMachine(company: 0) { settings throws(StateMachineError) in
                    let image = try HeapImage(base: mapping.alias, settings: settings)
                    image.writer = runtime
                    return image
                }
                replica = try StateMachine(company: 0)
                try both(.bootstrap(settings))
                let allocated = try both(.alloc(size: UInt64((pages - 1) * pageSize), member: 1))
                guard case .allocated(let address) = allocated else { throw FixtureError(what: "alloc: \(allocated)") }
                block = address
            }

            struct FixtureError: Error { var what: String }

            /// Applies `body` to both state machines at the next index; they must agree.
            @discardableResult
            func both(_ body: CommandBody) throws -> ApplyResult {
                index += 1
                let mine = try machine.apply(Command(body: body), index: index)
                let theirs = try replica.apply(Command(body: body), index: index)
                #expect(mine == theirs, "the runtime's state machine and the replica disagree at \(index)")
                return mine
            }

            /// A write of `bytes` at `offset` of heap page `page`, from another member.
            func remoteWrite(page: Int, offset: Int, _ bytes: [UInt8]) throws {
                let result = try both(
                    .write(
                        member: 2, pages: [PageWrite(page: UInt64(page), diff: PageDiff(writing: bytes, atOffset: offset))],
                        releaseLock: nil, releaseEpoch: 0))
                #expect(result.isApplied, "\(result)")
            }

            /// Page `page` of the application's view.
            func view(_ page: Int) -> UnsafeMutablePointer<UInt8> {
                mapping.viewPage(page).assumingMemoryBound(to: UInt8.self)
            }

            /// The first page of the allocated block.
            var firstPage: Int { Int((block - settings.heapBase) / UInt64(pageSize)) }

            /// The committed bytes of `page` as the runtime's image reports them.
            func committed(_ page: Int) throws -> [UInt8] {
                try machine.heap!.read(address: settings.heapBase + UInt64(page * pageSize), length: pageSize)
            }

            func replicaBytes(_ page: Int) throws -> [UInt8] {
                try replica.heap!.read(address: settings.heapBase + UInt64(page * pageSize), length: pageSize)
            }

            /// Applies this member's release as its entry, accepted or rejected as the state
            /// machine decides, and finishes it the way the engine does.
            func publish(_ release: RuntimeHeap.Release, lock: (name: String, epoch: UInt64)? = nil) throws -> ApplyResult {
                let result = try both(
                    .write(member: 1, pages: release.writes, releaseLock: lock?.name, releaseEpoch: lock?.epoch ?? 0))
                runtime.finishRelease(release.id, accepted: result.isApplied)
                return result
            }

            deinit { mapping.close() }
        }

        @Test func committedWritesReachTheViewAndMatchAPrivateReplica() throws {
            let f = try Fixture(base: Base.replica, pages: 8)
            let pages = f.firstPage..<f.firstPage + 7
            for page in pages {
                try f.remoteWrite(page: page, offset: page * 3, [UInt8](repeating: UInt8(page + 1), count: 100))
            }
            for page in pages {
                #expect(f.view(page)[page * 3] == UInt8(page + 1))
                #expect(f.view(page)[page * 3 + 99] == UInt8(page + 1))
                #expect(try f.committed(page) == f.replicaBytes(page))
            }
            #expect(try f.machine.canonicalDigest() == f.replica.canonicalDigest())
            // Every page was readable before and is readable again: hidden, then restored.
            #expect(f.mapping.access(ofPage: f.firstPage) == .readOnly)
            #expect(f.runtime.counterValues.pagesHidden >= 7)
        }

        @Test func aCommittedByteNeverUndoesALocalUncommittedOne() throws {
            let f = try Fixture(base: Base.local, pages: 4)
            let page = f.firstPage
            f.view(page)[10] = 0xAA  // local, uncommitted: the page is dirty now
            #expect(f.mapping.access(ofPage: page) == .readWrite)
            // Another member writes byte 10 (a race with our write) and byte 20.
            try f.remoteWrite(page: page, offset: 10, [0x11])
            try f.remoteWrite(page: page, offset: 20, [0x22])
            #expect(f.view(page)[10] == 0xAA, "the local uncommitted byte must survive")
            #expect(f.view(page)[20] == 0x22, "the committed byte the application did not touch must show")
            #expect(try f.committed(page)[10] == 0x11, "the committed contents are the cluster's")
            #expect(try f.committed(page) == f.replicaBytes(page))
            #expect(try f.machine.canonicalDigest() == f.replica.canonicalDigest())
            // The release carries only the local byte, against the committed one.
            let release = try #require(f.runtime.beginRelease())
            #expect(release.writes.count == 1)
            let runs = try release.writes[0].diff.runs(pageSize: f.pageSize)
            #expect(runs == [PageDiff.Run(offset: 10, bytes: [0xAA])])
            #expect(try f.publish(release).isApplied)
            #expect(try f.committed(page)[10] == 0xAA)
            #expect(try f.machine.canonicalDigest() == f.replica.canonicalDigest())
            #expect(f.runtime.releasesInFlight == 0)
        }

        @Test func snapshotsAndReadsShowOnlyCommittedBytes() throws {
            let f = try Fixture(base: Base.snapshot, pages: 6)
            try f.remoteWrite(page: f.firstPage, offset: 0, [1, 2, 3])
            f.view(f.firstPage)[1] = 0xEE  // dirty, not committed
            f.view(f.firstPage + 1)[5] = 0xEF
            let inFlight = try #require(f.runtime.beginRelease())  // collected, not applied yet
            f.view(f.firstPage + 2)[7] = 0xF0  // dirty again after the collection
            #expect(try f.machine.canonicalDigest() == f.replica.canonicalDigest())
            #expect(f.machine.heap!.snapshot() == f.replica.heap!.snapshot())
            #expect(try f.committed(f.firstPage)[1] == 2)
            // Once the release applies, the committed contents have its bytes.
            #expect(try f.publish(inFlight).isApplied)
            #expect(try f.committed(f.firstPage)[1] == 0xEE)
            #expect(try f.committed(f.firstPage + 1)[5] == 0xEF)
            #expect(try f.committed(f.firstPage + 2)[7] == 0)
            #expect(f.machine.heap!.snapshot() == f.replica.heap!.snapshot())
        }

        @Test func aRejectedReleaseIsUndoneAndKeepsLaterCommittedAndNewerLocalBytes() throws {
            let f = try Fixture(base: Base.rejected, pages: 4)
            let page = f.firstPage
            // We hold lock "L" at epoch 1 (its lease runs to 1000 ms on the leader's clock).
            #expect(try f.both(.lockAcquire(name: "L", member: 1, ttlMillis: 1000, now: 0)) == .lockGranted(epoch: 1, expiresAt: 1000))
            try f.remoteWrite(page: page, offset: 0, [5, 5, 5, 5])
            f.view(page)[0] = 0xA0
            f.view(page)[1] = 0xA1
            f.view(page + 1)[9] = 0xA9
            let release = try #require(f.runtime.beginRelease())
            #expect(release.writes.map(\.page) == [UInt64(page), UInt64(page + 1)])
            // After the collection: this process writes byte 1 again, and the lease runs out:
            // another member takes the lock and writes byte 2 of the page.
            f.view(page)[1] = 0xB1
            #expect(try f.both(.lockExpire(name: "L", epoch: 1)) == .lockExpired)
            #expect(try f.both(.lockAcquire(name: "L", member: 2, ttlMillis: 1000, now: 2000)) == .lockGranted(epoch: 2, expiresAt: 3000))
            try f.remoteWrite(page: page, offset: 2, [0xC2])
            // Our release arrives with the stale epoch: rejected, and undone here.
            let result = try f.publish(release, lock: ("L", 1))
            #expect(result.rejection?.code == .staleEpoch)
            #expect(f.view(page)[0] == 5, "the rejected byte goes back to its committed value")
            #expect(f.view(page + 1)[9] == 0, "on every page of the release")
            #expect(f.view(page)[1] == 0xB1, "a newer local write stays for the next release")
            #expect(f.view(page)[2] == 0xC2, "a byte committed after the collection stays")
            #expect(try f.committed(page) == f.replicaBytes(page))
            #expect(try f.machine.canonicalDigest() == f.replica.canonicalDigest())
            #expect(f.runtime.counterValues.undone == 1)
            // The next release publishes exactly the newer local byte.
            let next = try #require(f.runtime.beginRelease())
            #expect(try next.writes.map { try $0.diff.runs(pageSize: f.pageSize) } == [[PageDiff.Run(offset: 1, bytes: [0xB1])]])
            #expect(try f.publish(next).isApplied)
            #expect(try f.machine.canonicalDigest() == f.replica.canonicalDigest())
        }

        @Test func twoReleasesInFlightOnOnePageCommitInOrder() throws {
            let f = try Fixture(base: Base.accepted, pages: 4)
            let page = f.firstPage
            f.view(page)[0] = 1
            let first = try #require(f.runtime.beginRelease())
            f.view(page)[0] = 2
            f.view(page)[1] = 3
            let second = try #require(f.runtime.beginRelease())
            #expect(try f.committed(page)[0] == 0, "neither release has applied")
            #expect(try f.publish(first).isApplied)
            #expect(try f.committed(page)[0] == 1)
            #expect(f.view(page)[0] == 2, "the first release's entry does not undo the second's bytes")
            #expect(try f.publish(second).isApplied)
            #expect(try f.committed(page)[0] == 2 && f.committed(page)[1] == 3)
            #expect(try f.machine.canonicalDigest() == f.replica.canonicalDigest())
        }

        @Test func anAbandonedReleaseIsPublishedAgainByTheNextOne() throws {
            let f = try Fixture(base: Base.abandoned, pages: 4)
            let page = f.firstPage
            f.view(page)[3] = 0x33
            f.view(page + 1)[4] = 0x44
            let abandoned = try #require(f.runtime.beginRelease())
            #expect(f.mapping.access(ofPage: page) == .readOnly)
            f.view(page + 1)[5] = 0x55  // dirty again after the collection
            // Its proposal failed without an outcome (the member stopped, say): give it up.
            f.runtime.abandonRelease(abandoned.id)
            #expect(f.runtime.releasesInFlight == 0)
            #expect(f.mapping.access(ofPage: page) == .readWrite, "the page is back in the dirty set")
            #expect(f.view(page)[3] == 0x33 && f.view(page + 1)[4] == 0x44, "nothing the application wrote is lost")
            let next = try #require(f.runtime.beginRelease())
            let runs = try next.writes.map { try $0.diff.runs(pageSize: f.pageSize) }
            #expect(next.writes.map(\.page) == [UInt64(page), UInt64(page + 1)])
            #expect(runs == [[PageDiff.Run(offset: 3, bytes: [0x33])], [PageDiff.Run(offset: 4, bytes: [0x44, 0x55])]])
            #expect(try f.publish(next).isApplied)
            #expect(try f.replicaBytes(page)[3] == 0x33 && f.replicaBytes(page + 1)[5] == 0x55)
            #expect(try f.machine.canonicalDigest() == f.replica.canonicalDigest())
            #expect(f.runtime.counterValues.abandoned == 1)
        }

        /// Rule 1: a reader that loops over the pages of one entry never sees two entries at
        /// once, while the apply path writes thousands of entries that each fill every page with
        /// one generation number. (With `RuntimeHeap(mapping:hidesChanges: false)` the same reader
        /// counts thousands of torn passes: the check can fail.)
        @Test func thePagesOfOneEntryBecomeVisibleTogether() throws {
            let pages = 4
            let f = try Fixture(base: Base.together, pages: pages + 1)
            let first = f.firstPage
            let words = f.pageSize / 8
            let stop = Atomic<Bool>(false)
            let torn = Atomic<Int>(0)
            let seen = Atomic<Int>(0)
            let base = UInt(bitPattern: f.mapping.viewPage(first))
            let pageSize = f.pageSize
            let reader = try OSThread {
                _ = CGallocyRuntime_thread_prepare()
                let view = UnsafePointer<UInt64>(bitPattern: base)!
                var last: UInt64 = 0
                var distinct = 0
                while !stop.load(ordering: .relaxed) {
                    // Words of every page, in the order the apply path writes them. Generations
                    // only grow, so one pass may see an older entry and then a newer one (the
                    // pass is not atomic), but never a newer word before an older one: that
                    // would be an entry seen half applied.
                    let g = view[0]
                    var previous = g
                    var mixed = false
                    for p in 0..<pages {
                        let pageWords = view + p * (pageSize / 8)
                        for w in stride(from: 0, to: words, by: 64) {
                            if pageWords[w] < previous { mixed = true }
                            previous = pageWords[w]
                        }
                    }
                    if mixed { torn.add(1, ordering: .relaxed) }
                    if g != last {
                        distinct += 1
                        last = g
                    }
                }
                seen.store(distinct, ordering: .relaxed)
            }
            for generation in UInt64(1)...1500 {
                var writes: [PageWrite] = []
                let bytes = [UInt64](repeating: generation, count: words).withUnsafeBytes { Array($0) }
                for p in 0..<pages {
                    writes.append(PageWrite(page: UInt64(first + p), diff: PageDiff(writing: bytes, atOffset: 0)))
                }
                f.index += 1
                let result = try f.machine.apply(
                    Command(body: .write(member: 2, pages: writes, releaseLock: nil, releaseEpoch: 0)), index: f.index)
                #expect(result.isApplied)
            }
            stop.store(true, ordering: .relaxed)
            reader.join()
            print("pages of one entry: \(seen.load(ordering: .relaxed)) generations seen by the reader, \(torn.load(ordering: .relaxed)) torn passes")
            #expect(torn.load(ordering: .relaxed) == 0)
            #expect(seen.load(ordering: .relaxed) > 1, "the reader must have seen entries change (else the test says nothing)")
        }
    }
}
