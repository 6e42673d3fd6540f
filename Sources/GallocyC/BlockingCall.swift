import CGallocyABI
import Dispatch
import Gallocy

/// How a C call waits for the async `Member` API: the work runs in a detached task on the Swift
/// concurrency pool, and the calling thread (a plain C thread) waits on a semaphore.
///
/// The caller must not be a thread of that pool: blocking one of its few threads (one a core)
/// could starve the very task it waits for. Every pool thread runs inside a task, so a caller
/// with a current task is refused with `GALLOCY_E_WRONG_THREAD` instead of deadlocking.
enum BlockingCall {
    /// Whether the calling thread is running a Swift task (and so is a concurrency pool thread, or
    /// an async context that called C).
    static var isOnSwiftTask: Bool { withUnsafeCurrentTask { $0 != nil } }

    static let wrongThread = CallError(
        GALLOCY_E_WRONG_THREAD,
        "a blocking libgallocy call was made from a Swift concurrency thread (a Swift task, or a callback libgallocy "
            + "runs); call it from a plain thread")

    /// Runs `body` to its end and returns its result; `GALLOCY_E_WRONG_THREAD` from a Swift task.
    /// Prepares the calling thread for the heap first (the member prepares only the pool threads
    /// its own work runs on).
    static func run<T>(_ body: @escaping @Sendable () async throws(MemberError) -> T) -> Result<T, CallError> {
        if isOnSwiftTask { return .failure(wrongThread) }
        Member.prepareThread()
        let outcome = Outcome<T>()
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            do throws(MemberError) {
                outcome.value = .success(try await body())
            } catch {
                outcome.value = .failure(CallError(error))
            }
            done.signal()
        }
        done.wait()
        return outcome.value ?? .failure(CallError(GALLOCY_E_UNAVAILABLE, "the call ended without an outcome"))
    }

    /// The result of one call, written by the task before it signals and read by the caller after
    /// its wait returns. `@unchecked Sendable`: the semaphore orders the two accesses.
    private final class Outcome<T>: @unchecked Sendable {
        var value: Result<T, CallError>?
    }
}

/// A failure to hand back to C: a code from gallocy.h and a message.
struct CallError: Error {
    var code: gallocy_error_t
    var message: String

    init(_ code: gallocy_error_t, _ message: String) {
        self.code = code
        self.message = message
    }

    init(_ error: MemberError) { self.init(error.code.cCode, error.message) }

    static func invalidArgument(_ message: String) -> CallError { CallError(GALLOCY_E_INVALID_ARGUMENT, message) }

    /// Records the error as this thread's last one and returns its code.
    @discardableResult
    func record() -> gallocy_error_t { LastError.set(code, message) }
}

/// A value that is not `Sendable` (a C pointer, a C callback) carried into the task of one
/// blocking call. `@unchecked Sendable`: the caller's thread waits while the task uses it, and the
/// pointee belongs to the caller, who promised it stays valid for the call.
struct Carried<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

extension Result where Failure == CallError {
    /// GALLOCY_OK after `store` wrote the success value to the caller's out-parameters, or the
    /// recorded error's code.
    func deliver(_ store: (Success) -> Void) -> gallocy_error_t {
        switch self {
        case .success(let value):
            store(value)
            return GALLOCY_OK
        case .failure(let error):
            return error.record()
        }
    }
}
