import CGallocyRuntime

/// The access the application view gives to one heap page, and the page's stable state in the
/// fault handler (`CGallocyRuntime_PAGE_…`).
package enum PageAccess: UInt8, Sendable, CaseIterable {
    /// PROT_NONE: every access goes to the fault service.
    case none = 0
    /// PROT_READ: reads are free; the first write makes a twin and marks the page dirty.
    case readOnly = 1
    /// PROT_READ | PROT_WRITE: the page is dirty (or leased, in the lease mode).
    case readWrite = 2
}

/// How the fault handler serves a write fault on a read-only page.
package enum CoherenceMode: Int32, Sendable {
    /// Release consistency: in the handler, with a twin (DESIGN "How a write flows").
    case release = 0
    /// Page leases: through the fault service.
    case lease = 1
}

/// What the fault handler has done since the heap was registered.
package struct FaultCounters: Sendable, Equatable {
    /// Write faults on read-only pages served in the handler (twin copied, page made writable).
    package var twinFaults: UInt64
    /// Faults that met a page another thread was moving, and retried the access.
    package var retriedFaults: UInt64
    /// Faults handed to the fault service.
    package var serviceRequests: UInt64
    /// Faults handed to the handler installed before ours.
    package var chainedFaults: UInt64

    /// The C runtime's counters now.
    package static var current: FaultCounters {
        let c = CGallocyRuntime_counters()
        return FaultCounters(
            twinFaults: c.twin_faults, retriedFaults: c.retried_faults,
            serviceRequests: c.service_requests, chainedFaults: c.chained_faults)
    }
}
