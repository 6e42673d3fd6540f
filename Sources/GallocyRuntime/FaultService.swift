import CGallocyRuntime

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The fault service: the one OS thread that serves the faults the handler cannot serve itself (an
/// access to a no-access page; in the lease mode, every fault). A faulting thread parks on a futex
/// until the service grants the page. The service decides the access through `serve`, which must
/// never touch the application view (only the alias): the view may be protected.
package final class FaultService {
    private var thread: OSThread?

    /// Starts the service thread. `serve` receives the page and whether the access was a write
    /// (false when the processor does not say), and returns the access to grant. Only one service
    /// runs per process.
    package init(serve: @escaping @Sendable (_ page: Int, _ isWrite: Bool) -> PageAccess) throws(RuntimeError) {
        CGallocyRuntime_service_reset()
        thread = try OSThread {
            var page = 0
            var isWrite: Int32 = 0
            while CGallocyRuntime_service_next(&page, &isWrite) == 0 {
                let access = serve(page, isWrite != 0)
                // A grant that fails leaves the page without access; the faulting thread faults
                // again and asks again. Out of memory mappings (ENOMEM after the runtime's own
                // coalescing), asking again would spin forever: stop with the reason instead.
                let result = CGallocyRuntime_service_grant(page, access.rawValue)
                if result == ENOMEM {
                    fatalError("the fault service cannot grant heap page \(page): \(MappingLimit.protectFailure(page: page, error: result))")
                }
            }
        }
    }

    /// Stops the service and waits for its thread. Idempotent.
    package func stop() {
        guard let thread else { return }
        CGallocyRuntime_service_stop()
        thread.join()
        self.thread = nil
    }

    deinit { stop() }
}
