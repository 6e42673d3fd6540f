import CGallocyRuntime

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
                // A grant that fails (mprotect out of mappings) leaves the page without access;
                // the faulting thread faults again and asks again.
                _ = CGallocyRuntime_service_grant(page, access.rawValue)
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
