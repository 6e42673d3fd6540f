// swift-format-ignore-file: AlwaysUseLowerCamelCase

// (the functions carry the C names that gallocy.h declares)
import CGallocyABI
import Gallocy

// Atomics on 8-byte words: gallocy.h, "Atomics".

/// The word at `word` as an address the task can carry (a pointer is not `Sendable`).
private func wordAddress(_ word: UnsafeMutablePointer<UInt64>?, _ function: String) throws(CallError) -> UInt {
    guard let word else { throw CallError.invalidArgument("\(function): the word is NULL") }
    return UInt(bitPattern: word)
}

private func pointer(_ address: UInt) -> UnsafeMutablePointer<UInt64> { UnsafeMutablePointer(bitPattern: address)! }

@c @implementation
public func gallocy_atomic_add(
    _ member: OpaquePointer?, _ word: UnsafeMutablePointer<UInt64>?, _ delta: UInt64,
    _ old: UnsafeMutablePointer<UInt64>?
) -> gallocy_error_t {
    let address: UInt
    do throws(CallError) { address = try wordAddress(word, "gallocy_atomic_add") } catch { return error.record() }
    return MemberHandle.call(member) { (m) async throws(MemberError) in
        try await m.atomicAdd(pointer(address), delta)
    } store: {
        old?.pointee = $0
    }
}

@c @implementation
public func gallocy_atomic_cas(
    _ member: OpaquePointer?, _ word: UnsafeMutablePointer<UInt64>?, _ expected: UInt64, _ desired: UInt64,
    _ exchanged: UnsafeMutablePointer<Bool>?, _ old: UnsafeMutablePointer<UInt64>?
) -> gallocy_error_t {
    let address: UInt
    do throws(CallError) { address = try wordAddress(word, "gallocy_atomic_cas") } catch { return error.record() }
    return MemberHandle.call(member) { (m) async throws(MemberError) in
        try await m.compareAndSwap(pointer(address), expected: expected, desired: desired)
    } store: {
        exchanged?.pointee = $0.exchanged
        old?.pointee = $0.old
    }
}

@c @implementation
public func gallocy_atomic_swap(
    _ member: OpaquePointer?, _ word: UnsafeMutablePointer<UInt64>?, _ value: UInt64,
    _ old: UnsafeMutablePointer<UInt64>?
) -> gallocy_error_t {
    let address: UInt
    do throws(CallError) { address = try wordAddress(word, "gallocy_atomic_swap") } catch { return error.record() }
    return MemberHandle.call(member) { (m) async throws(MemberError) in
        try await m.atomicSwap(pointer(address), value)
    } store: {
        old?.pointee = $0
    }
}

@c @implementation
public func gallocy_atomic_load(
    _ member: OpaquePointer?, _ word: UnsafeMutablePointer<UInt64>?, _ value: UnsafeMutablePointer<UInt64>?
) -> gallocy_error_t {
    guard let value else { return CallError.invalidArgument("gallocy_atomic_load: value is NULL").record() }
    let address: UInt
    do throws(CallError) { address = try wordAddress(word, "gallocy_atomic_load") } catch { return error.record() }
    return MemberHandle.call(member) { (m) async throws(MemberError) in
        try await m.atomicLoad(pointer(address))
    } store: {
        value.pointee = $0
    }
}
