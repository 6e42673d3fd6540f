import Glibc

/// Lets many read transactions run at once but excludes them all while the memory map is
/// resized: `mdb_env_set_mapsize` may only be called when this process has no transaction open.
/// A `pthread_rwlock_t`, kept at a stable heap address as POSIX requires.
///
/// The lock prefers writers (`PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP`): with glibc's
/// default, readers that follow each other without a pause starve a resize forever (measured:
/// minutes). The price is that shared holds must not nest on one thread (a waiting resize
/// blocks the inner one: deadlock), and a thread must never ask for the exclusive hold while it
/// has a shared one; `LMDBEnvironment` documents both rules for its callers.
final class ResizeGate: @unchecked Sendable {
    // @unchecked: the lock is only touched through pthread_rwlock_* calls, which are thread-safe;
    // the pointer itself never changes after init.
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    init() {
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_rwlock_t())
        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        pthread_rwlock_init(lock, &attributes)
        pthread_rwlockattr_destroy(&attributes)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    func shared<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    func exclusive<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
}
