import CGallocyRuntime
import GallocyCodec
import GallocyRuntime
import Synchronization
import Testing

/// Releases that race with writers, and the lease mode's write faults.
extension RuntimeSuite {
    @Suite struct ReleaseRaceTests {
        let pageSize = SharedHeap.systemPageSize

        @Test func releasesRacingWithWritersLoseNoWrite() throws {
            let pages = 4
            let heap = try HeapMapping(base: TestBase.race, size: pages * pageSize)
            defer { heap.close() }
            let writers = 4
            let stop = Shared()
            let address = UInt(bitPattern: heap.view)
            let pageSize = self.pageSize
            let threads = try (0..<writers).map { index throws(RuntimeError) in
                try OSThread {
                    _ = CGallocyRuntime_thread_prepare()
                    let view = UnsafeMutableRawPointer(bitPattern: address)!
                    var value: UInt32 = 0
                    // Each writer owns one 4-byte word on every page and counts it up.
                    while stop.gate.load(ordering: .acquiring) == 0 {
                        value &+= 1
                        for page in 0..<pages {
                            view.storeBytes(of: value, toByteOffset: page * pageSize + index * 64, as: UInt32.self)
                        }
                    }
                }
            }
            // What the other members would hold: the pages rebuilt from released diffs only.
            var replica = [[UInt8]](repeating: [UInt8](repeating: 0, count: pageSize), count: pages)
            var releases = 0
            let deadline = CGallocyRuntime_now_ns() + 300_000_000
            while CGallocyRuntime_now_ns() < deadline {
                for dirty in heap.collectDirty() {
                    try dirty.diff.apply(to: &replica[dirty.page])
                    releases += 1
                }
            }
            stop.gate.store(1, ordering: .releasing)
            for thread in threads { thread.join() }
            for dirty in heap.collectDirty() { try dirty.diff.apply(to: &replica[dirty.page]) }
            for page in 0..<pages {
                #expect(replica[page] == Array(UnsafeRawBufferPointer(start: heap.viewPage(page), count: pageSize)))
            }
            #expect(releases > pages)
        }

        @Test func inTheLeaseModeAWriteFaultGoesToTheService() throws {
            let heap = try HeapMapping(base: TestBase.lease, size: 4 * pageSize, mode: .lease)
            defer { heap.close() }
            let writes = Shared()
            let service = try FaultService { _, isWrite in
                if isWrite { writes.count.add(1, ordering: .relaxed) }
                return isWrite ? .readWrite : .readOnly
            }
            defer { service.stop() }
            let before = FaultCounters.current
            heap.viewPage(1).storeBytes(of: 0x42, toByteOffset: 7, as: UInt8.self)
            #expect(heap.alias.load(fromByteOffset: pageSize + 7, as: UInt8.self) == 0x42)
            #expect(writes.count.load(ordering: .relaxed) == 1)
            #expect(heap.access(ofPage: 1) == .readWrite)
            #expect(heap.dirtyCount == 0)
            #expect(FaultCounters.current.twinFaults == before.twinFaults)
        }
    }
}
