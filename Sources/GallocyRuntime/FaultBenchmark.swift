import CGallocyRuntime

/// The first-write fault cost of the heap against a raw fault whose handler only mprotects the
/// page (both measured here; DESIGN "What this machine allows" gives 4–9 µs for the raw one).
package enum FaultBenchmark {
    /// Median nanoseconds per page over `rounds` rounds of `pages` pages each.
    package struct Figures: Sendable {
        /// A write fault on a read-only heap page: twin copy, dirty bit, mprotect, in our handler.
        package var firstWriteNs: Double
        /// A write fault on a read-only anonymous page whose handler only calls mprotect.
        package var rawFaultNs: Double
        /// `firstWriteNs / rawFaultNs`; the goal is at most 2.
        package var ratio: Double { firstWriteNs / rawFaultNs }
    }

    /// Measures both. Maps heaps at `base` (one at a time) and swaps the SIGSEGV disposition during
    /// the raw measurement: run it with no other heap open and no other thread faulting.
    package static func run(base: UInt = SharedHeap.defaultBase, pages: Int = 1024, rounds: Int = 5)
        throws(RuntimeError) -> Figures
    {
        let rounds = max(1, min(rounds, 64))
        var firstWrite: [Double] = []
        for _ in 0..<rounds {
            let heap = try HeapMapping(base: base, size: pages * SharedHeap.systemPageSize)
            defer { heap.close() }
            // Read every page first so that both measurements start from mapped, read-only pages.
            var sum: UInt8 = 0
            for page in 0..<pages { sum &+= heap.viewPage(page).load(as: UInt8.self) }
            let start = CGallocyRuntime_now_ns()
            for page in 0..<pages { heap.viewPage(page).storeBytes(of: sum &+ 1, as: UInt8.self) }
            let end = CGallocyRuntime_now_ns()
            firstWrite.append(Double(end - start) / Double(pages))
        }
        firstWrite.sort()
        let raw = CGallocyRuntime_bench_raw_fault_ns(pages, Int32(rounds))
        guard raw > 0 else { throw RuntimeError(.system, "the raw fault measurement failed") }
        return Figures(firstWriteNs: firstWrite[rounds / 2], rawFaultNs: raw)
    }
}
