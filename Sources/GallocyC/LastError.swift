// swift-format-ignore-file: AlwaysUseLowerCamelCase

// (the functions carry the C names that gallocy.h declares)
import CGallocyABI
import Gallocy

#if canImport(Glibc)
    import Glibc
#endif

/// The error of the last call that failed on a thread (`gallocy_last_error`,
/// `gallocy_last_error_message`), kept in a pthread key so that every C thread has its own.
final class LastError {
    var code: gallocy_error_t = GALLOCY_OK
    /// strdup'd; handed to C until the next failure on this thread replaces it.
    var message: UnsafeMutablePointer<CChar>?

    deinit { free(message) }

    /// One key for the process; a thread's record is released when the thread exits.
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let status = pthread_key_create(&key) { raw in
            guard let raw else { return }
            Unmanaged<LastError>.fromOpaque(raw).release()
        }
        precondition(status == 0, "pthread_key_create failed: \(status)")
        return key
    }()

    /// This thread's record, nil if no call has failed on it.
    static var current: LastError? {
        pthread_getspecific(key).map { Unmanaged<LastError>.fromOpaque($0).takeUnretainedValue() }
    }

    /// Records a failure on this thread and returns its code, for `return LastError.set(...)`.
    @discardableResult
    static func set(_ code: gallocy_error_t, _ message: String) -> gallocy_error_t {
        let record: LastError
        if let existing = current {
            record = existing
        } else {
            record = LastError()
            pthread_setspecific(key, Unmanaged.passRetained(record).toOpaque())
        }
        free(record.message)
        record.code = code
        record.message = strdup(message)
        return code
    }
}

extension MemberError.Code {
    /// The C interface's code: the same conditions, with values fixed by gallocy.h. Exhaustive, so
    /// that a new Swift code does not compile until the header has one too.
    var cCode: gallocy_error_t {
        switch self {
        case .invalidOptions: GALLOCY_E_INVALID_OPTIONS
        case .startFailed: GALLOCY_E_START_FAILED
        case .heapBaseInUse: GALLOCY_E_HEAP_BASE_IN_USE
        case .unavailable: GALLOCY_E_UNAVAILABLE
        case .timeout: GALLOCY_E_TIMEOUT
        case .leaseExpired: GALLOCY_E_LEASE_EXPIRED
        case .lockBusy: GALLOCY_E_LOCK_BUSY
        case .notAllocated: GALLOCY_E_NOT_ALLOCATED
        case .outOfSpace: GALLOCY_E_OUT_OF_SPACE
        case .invalidArgument: GALLOCY_E_INVALID_ARGUMENT
        case .stopped: GALLOCY_E_STOPPED
        }
    }
}

/// A C string that lives as long as the program (a static string literal's bytes).
func staticCString(_ text: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(text.utf8Start).assumingMemoryBound(to: CChar.self)
}

@c @implementation
public func gallocy_last_error_message() -> UnsafePointer<CChar>? {
    guard let message = LastError.current?.message else { return staticCString("") }
    return UnsafePointer(message)
}

@c @implementation
public func gallocy_last_error() -> gallocy_error_t {
    LastError.current?.code ?? GALLOCY_OK
}

@c @implementation
public func gallocy_error_name(_ code: gallocy_error_t) -> UnsafePointer<CChar>? {
    switch code {
    case GALLOCY_OK: staticCString("ok")
    case GALLOCY_E_INVALID_OPTIONS: staticCString("invalid_options")
    case GALLOCY_E_START_FAILED: staticCString("start_failed")
    case GALLOCY_E_HEAP_BASE_IN_USE: staticCString("heap_base_in_use")
    case GALLOCY_E_UNAVAILABLE: staticCString("unavailable")
    case GALLOCY_E_TIMEOUT: staticCString("timeout")
    case GALLOCY_E_LEASE_EXPIRED: staticCString("lease_expired")
    case GALLOCY_E_LOCK_BUSY: staticCString("lock_busy")
    case GALLOCY_E_NOT_ALLOCATED: staticCString("not_allocated")
    case GALLOCY_E_OUT_OF_SPACE: staticCString("out_of_space")
    case GALLOCY_E_INVALID_ARGUMENT: staticCString("invalid_argument")
    case GALLOCY_E_STOPPED: staticCString("stopped")
    case GALLOCY_E_WRONG_THREAD: staticCString("wrong_thread")
    default: staticCString("unknown")
    }
}
