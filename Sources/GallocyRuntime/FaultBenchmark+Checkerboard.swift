import CGallocyRuntime

extension FaultBenchmark {
    /// Writing every other page of a heap past `vm.max_map_count`: the first-write fault below the
    /// limit against past it (where a page's own mprotect fails and its group of 64 is coalesced),
    /// and the release of it all.
    package struct Checkerboard: Sendable {
        package var maxMapCount: Int
        package var pages: Int
        /// Pages written (every other page).
        package var written: Int
        /// Median ns per written page over the first `window` written pages (below the limit).
        package var belowLimitNs: Double
        /// Median ns per written page over the last `window` written pages (past the limit).
        package var pastLimitNs: Double
        /// Pages in each timed window.
        package var window: Int
        /// Median ns per released page of `collectDirty` (diffs of written and group-twinned pages).
        package var releaseNsPerPage: Double
        /// Pages released (written plus the read-only ones groups took twins of).
        package var released: Int
        /// Groups coalesced and single-page mprotects that failed with ENOMEM, in the last round.
        package var coalescedGroups: UInt64
        package var outOfMaps: UInt64
    }

    /// Maps a heap of `2 * vm.max_map_count + 2048` pages at `base` per round and writes one byte
    /// to every other page. Run it with no other heap open.
    package static func checkerboard(base: UInt = SharedHeap.defaultBase, rounds: Int = 3)
        throws(RuntimeError) -> Checkerboard
    {
        guard let maxMaps = MappingLimit.maxMapCount else {
            throw RuntimeError(.system, "cannot read /proc/sys/vm/max_map_count")
        }
        let rounds = max(1, min(rounds, 16))
        let pageSize = SharedHeap.systemPageSize
        let pages = 2 * maxMaps + 2048
        let written = pages / 2
        let window = min(maxMaps / 4, 8192)
        var below: [Double] = []
        var past: [Double] = []
        var release: [Double] = []
        var released = 0
        var counters = (groups: UInt64(0), outOfMaps: UInt64(0))
        for _ in 0..<rounds {
            let heap = try HeapMapping(base: base, size: pages * pageSize)
            defer { heap.close() }
            var sum: UInt8 = 0
            for page in 0..<pages { sum &+= heap.viewPage(page).load(as: UInt8.self) }
            let start = MappingLimit.Counters.current
            var t0 = CGallocyRuntime_now_ns()
            for i in 0..<written {
                if i == window {
                    below.append(Double(CGallocyRuntime_now_ns() - t0) / Double(window))
                } else if i == written - window {
                    t0 = CGallocyRuntime_now_ns()
                }
                heap.viewPage(2 * i).storeBytes(of: sum &+ 1, as: UInt8.self)
            }
            past.append(Double(CGallocyRuntime_now_ns() - t0) / Double(window))
            let end = MappingLimit.Counters.current
            counters = (end.coalescedGroups - start.coalescedGroups, end.outOfMaps - start.outOfMaps)
            let r0 = CGallocyRuntime_now_ns()
            released = heap.collectDirty().count
            release.append(Double(CGallocyRuntime_now_ns() - r0) / Double(max(released, 1)))
        }
        below.sort()
        past.sort()
        release.sort()
        return Checkerboard(
            maxMapCount: maxMaps, pages: pages, written: written, belowLimitNs: below[rounds / 2],
            pastLimitNs: past[rounds / 2], window: window, releaseNsPerPage: release[rounds / 2],
            released: released, coalescedGroups: counters.groups, outOfMaps: counters.outOfMaps)
    }
}
