#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A dedicated operating-system thread, off the Swift concurrency pool: the fault service runs on
/// one (DESIGN "Threads"), and tests use them to fault from many threads at once.
package final class OSThread {
    private var thread: pthread_t
    private var joined = false

    /// Starts `body` on a new thread (`pthread_create`).
    package init(_ body: @escaping @Sendable () -> Void) throws(RuntimeError) {
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(
            &thread, nil,
            { context in
                Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
                return nil
            }, context)
        guard result == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            throw RuntimeError(.system, "pthread_create failed: errno \(result)")
        }
        self.thread = thread
    }

    /// Waits for the thread to finish (`pthread_join`). Idempotent.
    package func join() {
        guard !joined else { return }
        joined = true
        pthread_join(thread, nil)
    }

    deinit { join() }

    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
}
