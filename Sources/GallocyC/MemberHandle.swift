// swift-format-ignore-file: AlwaysUseLowerCamelCase

// (the functions carry the C names that gallocy.h declares)
import CGallocyABI
import Gallocy
import Synchronization

/// What `gallocy_member_t` points at: the member, and whether `gallocy_stop` has begun (so that
/// calls still waiting end with `GALLOCY_E_STOPPED` rather than retry forever).
final class MemberHandle: Sendable {
    let member: Member
    private let stopping = Atomic<Bool>(false)

    init(member: Member) { self.member = member }

    var isStopping: Bool { stopping.load(ordering: .acquiring) }
    func markStopping() { stopping.store(true, ordering: .releasing) }

    static func from(_ pointer: OpaquePointer?) -> MemberHandle? {
        pointer.map { Unmanaged<MemberHandle>.fromOpaque(UnsafeRawPointer($0)).takeUnretainedValue() }
    }

    /// Runs `body` with the member behind `pointer` as one blocking call, and hands its result to
    /// `store` (the caller's out-parameters). An error of a member being stopped is reported as
    /// `GALLOCY_E_STOPPED`.
    static func call<T>(
        _ pointer: OpaquePointer?, _ body: @escaping @Sendable (Member) async throws(MemberError) -> T,
        store: (T) -> Void = { _ in }
    ) -> gallocy_error_t {
        // The thread first: a call that must not block here fails the same way whatever its
        // arguments.
        if BlockingCall.isOnSwiftTask { return BlockingCall.wrongThread.record() }
        guard let handle = from(pointer) else { return CallError.invalidArgument("the member is NULL").record() }
        let member = handle.member
        let result = BlockingCall.run { () async throws(MemberError) -> T in try await body(member) }
        if case .failure(let error) = result, handle.isStopping, error.code != GALLOCY_E_WRONG_THREAD {
            return CallError(GALLOCY_E_STOPPED, "the member was stopped: \(error.message)").record()
        }
        return result.deliver(store)
    }
}

@c @implementation
public func gallocy_start(_ options: OpaquePointer?) -> OpaquePointer? {
    guard let startOptions = StartOptions.from(options) else {
        CallError.invalidArgument("the options are NULL").record()
        return nil
    }
    let memberOptions: MemberOptions
    do throws(CallError) { memberOptions = try startOptions.memberOptions() } catch {
        error.record()
        return nil
    }
    let readyTimeout = startOptions.readyTimeout
    switch BlockingCall.run({ () async throws(MemberError) in
        try await Member.start(memberOptions, readyTimeout: readyTimeout)
    }) {
    case .success(let member):
        return OpaquePointer(Unmanaged.passRetained(MemberHandle(member: member)).toOpaque())
    case .failure(let error):
        error.record()
        return nil
    }
}

@c @implementation
public func gallocy_stop(_ member: OpaquePointer?) -> gallocy_error_t {
    guard let handle = MemberHandle.from(member) else {
        return CallError.invalidArgument("the member is NULL").record()
    }
    if BlockingCall.isOnSwiftTask { return BlockingCall.wrongThread.record() }
    handle.markStopping()
    let stopping = handle.member
    let result = BlockingCall.run { () async throws(MemberError) in await stopping.stop() }
    // Calls still in flight hold their own reference to the member.
    Unmanaged<MemberHandle>.fromOpaque(UnsafeRawPointer(member!)).release()
    return result.deliver { _ in }
}

@c @implementation
public func gallocy_member_id(_ member: OpaquePointer?) -> UInt64 {
    MemberHandle.from(member)?.member.id ?? 0
}

@c @implementation
public func gallocy_heap_base(_ member: OpaquePointer?) -> UnsafeMutableRawPointer? {
    MemberHandle.from(member)?.member.heapBase
}

@c @implementation
public func gallocy_heap_size(_ member: OpaquePointer?) -> Int {
    MemberHandle.from(member)?.member.heapSize ?? 0
}

@c @implementation
public func gallocy_thread_prepare() {
    Member.prepareThread()
}
