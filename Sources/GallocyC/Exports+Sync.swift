// swift-format-ignore-file: AlwaysUseLowerCamelCase

// (the functions carry the C names that gallocy.h declares)
import CGallocyABI
import Gallocy

#if canImport(Glibc)
    import Glibc
#endif

// Locks, releases and barriers: gallocy.h, "Locks, releases and barriers".

/// What `gallocy_lock_t` points at: the Swift API's lock, and its name as a C string for
/// `gallocy_lock_name`.
final class LockHandle {
    let lock: SharedLock
    let cName: UnsafeMutablePointer<CChar>

    init(_ lock: SharedLock) {
        self.lock = lock
        cName = strdup(lock.name)
    }

    deinit { free(cName) }

    static func from(_ pointer: OpaquePointer?) -> LockHandle? {
        pointer.map { Unmanaged<LockHandle>.fromOpaque(UnsafeRawPointer($0)).takeUnretainedValue() }
    }
}

/// How long one `Member.lock` waits before the C call looks again at whether the member is being
/// stopped: `Member.lock` without a bound would retry forever once the member stops.
private let lockWaitSlice: Duration = .seconds(1)

@c @implementation
public func gallocy_lock(
    _ member: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ leaseMillis: UInt64, _ waitMillis: Int64,
    _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> gallocy_error_t {
    guard let out else { return CallError.invalidArgument("gallocy_lock: out is NULL").record() }
    let lockName: String
    do throws(CallError) { lockName = try swiftString(name, "the lock's name") } catch { return error.record() }
    guard leaseMillis > 0 else { return CallError.invalidArgument("lock \(lockName) with a lease of 0 ms").record() }
    guard let handle = MemberHandle.from(member) else {
        return CallError.invalidArgument("the member is NULL").record()
    }
    let lease = Duration.milliseconds(Int64(clamping: leaseMillis))
    let clock = ContinuousClock()
    let deadline = waitMillis < 0 ? nil : clock.now.advanced(by: .milliseconds(waitMillis))
    return MemberHandle.call(member) { (m) async throws(MemberError) -> SharedLock in
        while true {
            let left = deadline.map { clock.now.duration(to: $0) }
            do throws(MemberError) {
                return try await m.lock(lockName, lease: lease, wait: min(left ?? lockWaitSlice, lockWaitSlice))
            } catch {
                guard error.code == .lockBusy else { throw error }
                if handle.isStopping {
                    throw MemberError(.stopped, "the member was stopped while waiting for lock \(lockName)")
                }
                if let deadline, clock.now >= deadline {
                    throw MemberError(
                        .lockBusy, "lock \(lockName) not granted within \(waitMillis) ms: \(error.message)")
                }
            }
        }
    } store: {
        out.pointee = OpaquePointer(Unmanaged.passRetained(LockHandle($0)).toOpaque())
    }
}

@c @implementation
public func gallocy_lock_epoch(_ lock: OpaquePointer?) -> UInt64 {
    LockHandle.from(lock)?.lock.epoch ?? 0
}

@c @implementation
public func gallocy_lock_name(_ lock: OpaquePointer?) -> UnsafePointer<CChar>? {
    LockHandle.from(lock).map { UnsafePointer($0.cName) }
}

@c @implementation
public func gallocy_unlock(_ member: OpaquePointer?, _ lock: OpaquePointer?) -> gallocy_error_t {
    guard let lock else { return CallError.invalidArgument("gallocy_unlock: the lock is NULL").record() }
    // Freed whatever happens, as the header promises (a lock not released runs out its lease).
    let held = Unmanaged<LockHandle>.fromOpaque(UnsafeRawPointer(lock)).takeRetainedValue().lock
    return MemberHandle.call(member) { (m) async throws(MemberError) in try await m.unlock(held) }
}

@c @implementation
public func gallocy_commit(_ member: OpaquePointer?) -> gallocy_error_t {
    MemberHandle.call(member) { (m) async throws(MemberError) in try await m.commit() }
}

@c @implementation
public func gallocy_barrier(
    _ member: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ participants: UInt32, _ generation: Int64
) -> gallocy_error_t {
    let barrierName: String
    do throws(CallError) { barrierName = try swiftString(name, "the barrier's name") } catch { return error.record() }
    let arrivingAt = generation < 0 ? nil : UInt64(generation)
    return MemberHandle.call(member) { (m) async throws(MemberError) in
        try await m.barrier(barrierName, participants: Int(participants), generation: arrivingAt)
    }
}
