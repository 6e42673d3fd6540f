import Glibc

/// Lets many read transactions run at once but excludes them all while the memory map is
/// resized: `mdb_env_set_mapsize` may only be called when this process has no transaction open.
/// A `pthread_rwlock_t`, kept at a stable heap address as POSIX requires.
///
/// Shared holds may nest on one thread (glibc's default read-preferring lock allows it), but a
/// thread must never ask for the exclusive hold while it has a shared one.
final class ResizeGate: @unchecked Sendable {
    // @unchecked: the lock is only touched through pthread_rwlock_* calls, which are thread-safe;
    // the pointer itself never changes after init.
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    init() {
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(lock, nil)
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
