import CGallocyRuntime

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The kernel's limit on memory mappings (`vm.max_map_count`) and what the runtime does about it.
///
/// Every run of view pages with one protection is a mapping (VMA) of its own, so a checkerboard of
/// read-only and writable pages runs out past about `vm.max_map_count / 2` writable pages. When a
/// page's own `mprotect` fails with ENOMEM, the runtime coalesces an aligned group of 64 pages into
/// one writable run (docs/runtime.md, "Out of memory mappings").
package enum MappingLimit {
    /// `/proc/sys/vm/max_map_count`, or nil if it cannot be read.
    package static var maxMapCount: Int? {
        let value = CGallocyRuntime_max_map_count()
        return value > 0 ? Int(value) : nil
    }

    /// The process's memory mappings now (lines of `/proc/self/maps`), or nil if it cannot be read.
    package static var vmaCount: Int? {
        let value = CGallocyRuntime_vma_count()
        return value >= 0 ? Int(value) : nil
    }

    /// What the fallback has done since the heap was registered.
    package struct Counters: Sendable, Equatable {
        /// Single-page `mprotect`s that failed with ENOMEM.
        package var outOfMaps: UInt64
        /// Groups of 64 pages made writable in one `mprotect` per run.
        package var coalescedGroups: UInt64
        /// Read-only pages besides the faulting one that a coalesced group made dirty and writable
        /// (written later without a fault of their own, or released with an empty diff).
        package var extraTwins: UInt64
        /// ENOMEM failures coalescing could not cure.
        package var failures: UInt64

        /// The C runtime's counters now.
        package static var current: Counters {
            let c = CGallocyRuntime_map_counters()
            return Counters(
                outOfMaps: c.out_of_maps, coalescedGroups: c.coalesced_groups, extraTwins: c.extra_twins,
                failures: c.failures)
        }
    }

    /// The message for an `mprotect` of heap page `page` that failed with `error`.
    package static func protectFailure(page: Int, error: Int32) -> String {
        var message = "mprotect of heap page \(page) failed: \(HeapMapping.describe(error))"
        if error == ENOMEM {
            let limit = maxMapCount.map(String.init) ?? "unknown"
            message +=
                ": the process is out of memory mappings (vm.max_map_count \(limit)); too many pages next to each other have different protections, and no group of read-only and writable pages was left to merge"
        }
        return message
    }
}
