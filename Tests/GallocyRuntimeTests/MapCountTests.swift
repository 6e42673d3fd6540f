import CGallocyRuntime
import GallocyCodec
import GallocyRuntime
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

extension TestBase {
    /// Far from the other bases: this heap is over half a gigabyte.
    static let mapCount: UInt = 0x2400_0000_0000
}

/// More dirty pages than `vm.max_map_count` allows one `mprotect` at a time.
extension RuntimeSuite {
    @Suite struct MapCountTests {
        let pageSize = SharedHeap.systemPageSize

        /// The bytes a page holds before any write: its number at both ends, zeros between (the
        /// memfd starts zeroed; `expected` clears its buffer first).
        func stamp(_ page: Int, into buffer: UnsafeMutableRawPointer) {
            buffer.storeBytes(of: UInt64(page) &* 0x9E37_79B9_7F4A_7C15, as: UInt64.self)
            buffer.storeBytes(of: ~UInt64(page), toByteOffset: pageSize - 8, as: UInt64.self)
        }

        /// Where round `round` writes on `page`, and what.
        func write(page: Int, round: Int) -> (offset: Int, value: UInt64) {
            (8 + (page % 400) * 8, UInt64(page) << 8 | UInt64(round + 1))
        }

        /// The page's bytes after the writes of rounds `rounds`.
        func expected(_ page: Int, rounds: [(round: Int, pages: [Bool])], into buffer: UnsafeMutableRawPointer) {
            memset(buffer, 0, pageSize)
            stamp(page, into: buffer)
            for (round, pages) in rounds where pages[page] {
                let (offset, value) = write(page: page, round: round)
                buffer.storeBytes(of: value, toByteOffset: offset, as: UInt64.self)
            }
        }

        /// Releases and checks every diff against the pre-image of the round: the twin is the
        /// pre-image, the diff turns it into the page, pages that were not written have empty diffs,
        /// and every page is read-only again.
        func releaseAndCheck(
            _ heap: HeapMapping, written: [Bool], before: [(round: Int, pages: [Bool])],
            after: [(round: Int, pages: [Bool])]
        ) throws {
            let released = heap.collectDirty()
            var seen = [Bool](repeating: false, count: written.count)
            for dirty in released { seen[dirty.page] = true }
            #expect(zip(written, seen).allSatisfy { !$0 || $1 }, "a written page was not released")
            #expect(heap.dirtyCount == 0)
            let preImage = UnsafeMutableRawPointer.allocate(byteCount: pageSize, alignment: 8)
            let wanted = UnsafeMutableRawPointer.allocate(byteCount: pageSize, alignment: 8)
            defer {
                preImage.deallocate()
                wanted.deallocate()
            }
            var twinMismatches = 0
            var rebuildMismatches = 0
            var nonEmptyUnwritten = 0
            for dirty in released {
                expected(dirty.page, rounds: before, into: preImage)
                expected(dirty.page, rounds: after, into: wanted)
                if memcmp(heap.twinPage(dirty.page), preImage, pageSize) != 0 { twinMismatches += 1 }
                try dirty.diff.apply(to: UnsafeMutableRawBufferPointer(start: preImage, count: pageSize))
                if memcmp(preImage, wanted, pageSize) != 0 || memcmp(heap.viewPage(dirty.page), wanted, pageSize) != 0 {
                    rebuildMismatches += 1
                }
                if !written[dirty.page] && !dirty.diff.isEmpty { nonEmptyUnwritten += 1 }
            }
            #expect(twinMismatches == 0)
            #expect(rebuildMismatches == 0)
            #expect(nonEmptyUnwritten == 0)
            let notReadOnly = (0..<heap.pageCount).filter { heap.access(ofPage: $0) != .readOnly }
            #expect(notReadOnly.isEmpty, "\(notReadOnly.count) pages not read-only after the release, first \(notReadOnly.prefix(4))")
        }

        @Test func aCheckerboardPastMaxMapCountIsCoalescedAndReleasedExactly() throws {
            let maxMaps = try #require(MappingLimit.maxMapCount)
            // Every other page of `board` pages written: about maxMaps + 500 writable islands,
            // twice as many VMAs as the process may have. Then `tail` groups of 64 untouched pages.
            let board = 2 * maxMaps + 1000
            let tailGroups = 160
            let pages = (board + 63) / 64 * 64 + tailGroups * 64
            let heap = try HeapMapping(base: TestBase.mapCount, size: pages * pageSize)
            defer { heap.close() }
            for page in 0..<pages { stamp(page, into: heap.aliasPage(page)) }
            let vmasBefore = try #require(MappingLimit.vmaCount)
            let start = MappingLimit.Counters.current

            // Round 1, one thread: the even pages of the board, then the middle page of each tail
            // group (alone in an all-read-only group: only coalescing elsewhere makes room for it).
            let tailStart = (board + 63) / 64 * 64
            let tailPages = (0..<tailGroups).map { tailStart + $0 * 64 + 32 }
            let round1Pages = Array(stride(from: 0, to: board, by: 2)) + tailPages
            var round1 = [Bool](repeating: false, count: pages)
            for page in round1Pages { round1[page] = true }
            for page in round1Pages {
                let (offset, value) = write(page: page, round: 0)
                heap.viewPage(page).storeBytes(of: value, toByteOffset: offset, as: UInt64.self)
            }
            let afterRound1 = MappingLimit.Counters.current
            let vmasDirty = try #require(MappingLimit.vmaCount)
            print(
                "max_map_count \(maxMaps), \(pages) pages, \(round1Pages.count) written: VMAs \(vmasBefore) -> \(vmasDirty), out of maps \(afterRound1.outOfMaps - start.outOfMaps), groups \(afterRound1.coalescedGroups - start.coalescedGroups), extra twins \(afterRound1.extraTwins - start.extraTwins)"
            )
            #expect(afterRound1.outOfMaps > start.outOfMaps)
            #expect(afterRound1.coalescedGroups > start.coalescedGroups)
            #expect(afterRound1.failures == start.failures)
            #expect(vmasDirty <= maxMaps)
            // Every written byte is in the view, and every written page is writable and dirty.
            var missing = 0
            for page in round1Pages {
                let (offset, value) = write(page: page, round: 0)
                if heap.viewPage(page).load(fromByteOffset: offset, as: UInt64.self) != value
                    || heap.access(ofPage: page) != .readWrite
                {
                    missing += 1
                }
            }
            #expect(missing == 0)
            // The tail pages' neighbours were not coalesced: room came from the board.
            #expect(tailPages.allSatisfy { heap.access(ofPage: $0 - 1) == .readOnly && heap.access(ofPage: $0 + 1) == .readOnly })
            #expect(heap.dirtyCount >= round1Pages.count)

            try releaseAndCheck(heap, written: round1, before: [], after: [(0, round1)])
            let vmasReleased = try #require(MappingLimit.vmaCount)
            #expect(vmasReleased <= vmasBefore + 2)

            // Round 2, two threads at once: the odd pages of the board, interleaved so that each
            // thread's groups hold pages the other is upgrading (skipped as someone else's).
            var round2 = [Bool](repeating: false, count: pages)
            for page in stride(from: 1, to: board, by: 2) { round2[page] = true }
            let address = UInt(bitPattern: heap.view)
            let pageSize = self.pageSize
            let gate = Shared()
            let threads = try (0..<2).map { index throws(RuntimeError) in
                try OSThread {
                    _ = CGallocyRuntime_thread_prepare()
                    gate.arriveAndWait(parties: 2)
                    let view = UnsafeMutableRawPointer(bitPattern: address)!
                    for page in stride(from: 1 + 2 * index, to: board, by: 4) {
                        let offset = 8 + (page % 400) * 8
                        view.storeBytes(of: UInt64(page) << 8 | 2, toByteOffset: page * pageSize + offset, as: UInt64.self)
                    }
                }
            }
            for thread in threads { thread.join() }
            let afterRound2 = MappingLimit.Counters.current
            #expect(afterRound2.coalescedGroups > afterRound1.coalescedGroups)
            #expect(afterRound2.failures == start.failures)
            try releaseAndCheck(heap, written: round2, before: [(0, round1)], after: [(0, round1), (1, round2)])
            print(
                "round 2 (two threads): out of maps \(afterRound2.outOfMaps - afterRound1.outOfMaps), groups \(afterRound2.coalescedGroups - afterRound1.coalescedGroups), VMAs after release \(MappingLimit.vmaCount ?? -1)"
            )
        }
    }
}
