import CGallocyRuntime
import GallocyCodec
import GallocyRuntime
import GallocyStateMachine
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The handler's state is per process: these tests run one at a time.
extension RuntimeSuite {
    @Suite struct HeapMappingTests {
        let pageSize = SharedHeap.systemPageSize

        @Test func theViewReadsWhatTheAliasWrote() throws {
            let heap = try HeapMapping(base: TestBase.viewAlias, size: 16 * pageSize)
            defer { heap.close() }
            #expect(UInt(bitPattern: heap.view) == TestBase.viewAlias)
            for page in 0..<heap.pageCount {
                heap.aliasPage(page).storeBytes(of: UInt64(page) &* 0x0101_0101, toByteOffset: 64, as: UInt64.self)
            }
            for page in 0..<heap.pageCount {
                #expect(heap.viewPage(page).load(fromByteOffset: 64, as: UInt64.self) == UInt64(page) &* 0x0101_0101)
                #expect(heap.access(ofPage: page) == .readOnly)
            }
            #expect(heap.dirtyCount == 0)
        }

        @Test func aFirstWriteTakesATwinAndTheReleaseDiffRebuildsThePage() throws {
            let heap = try HeapMapping(base: TestBase.firstWrite, size: 8 * pageSize)
            defer { heap.close() }
            let page = 3
            for i in 0..<pageSize {
                heap.aliasPage(page).storeBytes(of: UInt8(i % 251), toByteOffset: i, as: UInt8.self)
            }
            let before = FaultCounters.current.twinFaults

            heap.viewPage(page).storeBytes(of: 0xAB, toByteOffset: 100, as: UInt8.self)
            heap.viewPage(page).storeBytes(of: 0xCD, toByteOffset: 2000, as: UInt8.self)

            #expect(FaultCounters.current.twinFaults == before + 1)
            #expect(heap.access(ofPage: page) == .readWrite)
            #expect(heap.dirtyCount == 1)
            let twin = Array(UnsafeRawBufferPointer(start: heap.twinPage(page), count: pageSize))
            #expect(twin == (0..<pageSize).map { UInt8($0 % 251) })
            #expect(twin[100] != 0xAB)

            let released = heap.collectDirty()
            #expect(released.map(\.page) == [page])
            #expect(heap.dirtyCount == 0)
            #expect(heap.access(ofPage: page) == .readOnly)
            var rebuilt = twin
            try released[0].diff.apply(to: &rebuilt)
            #expect(rebuilt == Array(UnsafeRawBufferPointer(start: heap.viewPage(page), count: pageSize)))

            // Released pages are read-only again: the next write is a first write again.
            heap.viewPage(page).storeBytes(of: 0xEF, toByteOffset: 5, as: UInt8.self)
            #expect(FaultCounters.current.twinFaults == before + 2)
            #expect(heap.collectDirty().map(\.page) == [page])
        }

        @Test func eightThreadsFirstWritingOnePageAllLandAndThePageIsDirtyOnce() throws {
            let heap = try HeapMapping(base: TestBase.concurrent, size: 4 * pageSize)
            defer { heap.close() }
            let threads = 8
            for round in 0..<20 {
                let page = round % heap.pageCount
                let address = UInt(bitPattern: heap.viewPage(page))
                let shared = Shared()
                let before = FaultCounters.current.twinFaults
                let workers = try (0..<threads).map { index throws(RuntimeError) in
                    try OSThread {
                        _ = CGallocyRuntime_thread_prepare()
                        shared.arriveAndWait(parties: threads)
                        let base = UnsafeMutableRawPointer(bitPattern: address)!
                        for j in 0..<16 {
                            base.storeBytes(of: UInt8(index + 1), toByteOffset: index * 16 + j, as: UInt8.self)
                        }
                    }
                }
                for worker in workers { worker.join() }
                #expect(FaultCounters.current.twinFaults == before + 1, "round \(round)")
                #expect(heap.dirtyCount == 1)
                let released = heap.collectDirty()
                #expect(released.map(\.page) == [page])
                for index in 0..<threads {
                    for j in 0..<16 {
                        #expect(
                            heap.viewPage(page).load(fromByteOffset: index * 16 + j, as: UInt8.self) == UInt8(index + 1)
                        )
                    }
                }
                // The diff carries every thread's bytes.
                var rebuilt = Array(UnsafeRawBufferPointer(start: heap.twinPage(page), count: pageSize))
                try released[0].diff.apply(to: &rebuilt)
                #expect(rebuilt == Array(UnsafeRawBufferPointer(start: heap.viewPage(page), count: pageSize)))
                // Clear the bytes through the alias for the next round on this page.
                memset(heap.aliasPage(page), 0, pageSize)
            }
        }

        @Test func readFaultsOnANoAccessPageAreServedByTheFaultService() throws {
            let heap = try HeapMapping(base: TestBase.service, size: 8 * pageSize, initialAccess: .none)
            defer { heap.close() }
            let served = Shared()
            let service = try FaultService { _, _ in
                served.count.add(1, ordering: .relaxed)
                return .readOnly
            }
            defer { service.stop() }
            // Rounds of readers faulting together on one no-access page: one request per round.
            let readers = 4
            let rounds = 24
            for round in 0..<rounds {
                let page = round % 8
                try heap.setAccess(.none, page: page)
                let expected = 0x1234_5678_0000_0000 | UInt64(round)
                heap.aliasPage(page).storeBytes(of: expected, toByteOffset: 8, as: UInt64.self)
                let address = UInt(bitPattern: heap.viewPage(page))
                let results = Shared()
                let gate = Shared()
                let threads = try (0..<readers).map { _ throws(RuntimeError) in
                    try OSThread {
                        _ = CGallocyRuntime_thread_prepare()
                        gate.arriveAndWait(parties: readers)
                        let value = UnsafeRawPointer(bitPattern: address)!.load(fromByteOffset: 8, as: UInt64.self)
                        if value == expected { results.count.add(1, ordering: .relaxed) }
                    }
                }
                for thread in threads { thread.join() }
                #expect(results.count.load(ordering: .relaxed) == readers, "round \(round)")
                #expect(served.count.load(ordering: .relaxed) == round + 1, "round \(round)")
                #expect(heap.access(ofPage: page) == .readOnly)
            }
            #expect(FaultCounters.current.serviceRequests == UInt64(rounds))
            try heap.setAccess(.none, pages: 0..<heap.pageCount)

            // A write to a no-access page: served as a read, then the write takes a twin.
            heap.viewPage(2).storeBytes(of: 9, toByteOffset: 0, as: UInt8.self)
            #expect(served.count.load(ordering: .relaxed) == rounds + 1)
            #expect(heap.access(ofPage: 2) == .readWrite)
            #expect(heap.collectDirty().map(\.page) == [2])
        }

        @Test func heapBytesReachAPipeThroughTheAliasWhileTheViewIsProtected() throws {
            let heap = try HeapMapping(base: TestBase.pipe, size: 4 * pageSize)
            defer { heap.close() }
            let bytes = (0..<300).map { UInt8(truncatingIfNeeded: $0 * 7) }
            bytes.withUnsafeBytes { heap.aliasPage(1).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            try heap.setAccess(.none, pages: 0..<heap.pageCount)
            var fds: [Int32] = [0, 0]
            #expect(pipe(&fds) == 0)
            defer {
                close(fds[0])
                close(fds[1])
            }
            // Why the runtime must not hand the view to the kernel: it does not fault, it fails.
            #expect(write(fds[1], heap.viewPage(1), 16) == -1 && errno == EFAULT)

            try heap.write(range: pageSize..<(pageSize + bytes.count), toFileDescriptor: fds[1])
            var received = [UInt8](repeating: 0, count: bytes.count)
            let count = received.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            #expect(count == bytes.count)
            #expect(received == bytes)
            #expect(FaultCounters.current.serviceRequests == 0)
        }

        @Test func aTakenBaseIsRefusedAndNothingIsMappedOverIt() throws {
            let size = 4 * pageSize
            let squatter = mmap(
                UnsafeMutableRawPointer(bitPattern: TestBase.taken), size, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
            #expect(UInt(bitPattern: squatter) == TestBase.taken)
            defer { munmap(squatter, size) }
            squatter!.storeBytes(of: 0x5A, as: UInt8.self)

            // Overlapping the squatter's last page, not only its first.
            let base = TestBase.taken + UInt(3 * pageSize)
            #expect {
                try HeapMapping(base: base, size: size)
            } throws: { error in
                guard let error = error as? RuntimeError else { return false }
                return error.code == .baseInUse
                    && error.message.contains("heap base 0x\(String(base, radix: 16)) is in use in this process")
            }
            #expect(squatter!.load(as: UInt8.self) == 0x5A)
            // The heap can be made again once the range is free, next to it.
            let heap = try HeapMapping(base: TestBase.taken + UInt(size), size: size)
            heap.close()
        }

        @Test func aBaseOutsideUserSpaceOrMisalignedIsRefused() {
            for base: UInt in [0, 0x1000, 0x7FFF_FFFF_0000, 0xFFFF_8000_0000_0000, TestBase.taken + 1] {
                #expect(throws: RuntimeError.self) { try HeapMapping(base: base, size: 16 * pageSize) }
            }
            #expect(throws: RuntimeError.self) { try HeapMapping(base: TestBase.taken, size: pageSize + 1) }
        }

        @Test func aCommittedDiffKeepsLocalUncommittedWritesToOtherBytes() throws {
            let heap = try HeapMapping(base: TestBase.apply, size: 4 * pageSize)
            defer { heap.close() }
            let page = 1
            heap.viewPage(page).storeBytes(of: 0x11, toByteOffset: 10, as: UInt8.self)  // local, uncommitted
            let remote = PageDiff(writing: [0x22, 0x23], atOffset: 500)
            try heap.applyCommitted(page: page, diff: remote)
            try heap.applyCommitted(page: 2, diff: PageDiff(writing: [0x33], atOffset: 0))  // a clean page

            #expect(heap.viewPage(page).load(fromByteOffset: 10, as: UInt8.self) == 0x11)
            #expect(heap.viewPage(page).load(fromByteOffset: 500, as: UInt8.self) == 0x22)
            #expect(heap.viewPage(2).load(as: UInt8.self) == 0x33)
            #expect(heap.access(ofPage: page) == .readWrite)
            #expect(heap.access(ofPage: 2) == .readOnly)
            // The local release carries only the local byte: the twin already had the remote ones.
            let released = heap.collectDirty()
            #expect(released.map(\.page) == [page])
            var zero = [UInt8](repeating: 0, count: pageSize)
            try released[0].diff.apply(to: &zero)
            #expect(zero[10] == 0x11 && zero[500] == 0 && zero[501] == 0)
        }

        @Test func theAliasBacksAHeapImage() throws {
            let heap = try HeapMapping(base: TestBase.image, size: 4 * pageSize)
            defer { heap.close() }
            let settings = ClusterSettings(
                clusterID: 1, heapBase: UInt64(TestBase.image), heapSize: UInt64(heap.size), pageSize: UInt32(pageSize))
            _ = try HeapImage(base: heap.alias, settings: settings)
        }

        @Test func firstWriteFaultCostAgainstARawFault() throws {
            let figures = try FaultBenchmark.run(base: TestBase.bench, pages: 256, rounds: 3)
            print(
                "first-write fault \(Int(figures.firstWriteNs)) ns/page, raw fault + mprotect \(Int(figures.rawFaultNs)) ns/page, ratio \(figures.ratio)"
            )
            #expect(figures.firstWriteNs > 0 && figures.rawFaultNs > 0)
        }
    }

}

extension RuntimeSuite.HeapMappingTests {
    @Test func aDirtyPageProtectedBeforeTheReleaseIsStillReleased() throws {
        let heap = try HeapMapping(base: TestBase.protectedDirty, size: 4 * pageSize)
        defer { heap.close() }
        heap.viewPage(0).storeBytes(of: 0x77, toByteOffset: 3, as: UInt8.self)
        try heap.setAccess(.none, page: 0)
        let released = heap.collectDirty()
        #expect(released.map(\.page) == [0])
        var zero = [UInt8](repeating: 0, count: pageSize)
        try released[0].diff.apply(to: &zero)
        #expect(zero[3] == 0x77)
        #expect(heap.access(ofPage: 0) == PageAccess.none)
    }

    @Test func threadsThatPreparedAnAlternateStackExitCleanly() throws {
        for _ in 0..<64 {
            let thread = try OSThread {
                _ = CGallocyRuntime_thread_prepare()
                _ = CGallocyRuntime_thread_prepare()
            }
            thread.join()
        }
        #expect(CGallocyRuntime_thread_prepare() == 0)
    }
}

extension RuntimeSuite.HeapMappingTests {
    @Test func aSecondHeapInOneProcessIsRefusedAndLeavesTheFirstWorking() throws {
        let heap = try HeapMapping(base: TestBase.second, size: 4 * pageSize)
        defer { heap.close() }
        #expect {
            try HeapMapping(base: TestBase.second + UInt(16 * pageSize), size: 4 * pageSize)
        } throws: { error in
            (error as? RuntimeError)?.code == .heapAlreadyRegistered
        }
        heap.viewPage(0).storeBytes(of: 1, as: UInt8.self)
        #expect(heap.collectDirty().map(\.page) == [0])
    }
}
