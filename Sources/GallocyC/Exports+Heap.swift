// swift-format-ignore-file: AlwaysUseLowerCamelCase

// (the functions carry the C names that gallocy.h declares)
import CGallocyABI
import Gallocy

// Allocation and named roots: gallocy.h, "Allocation" and "Named roots".

@c @implementation
public func gallocy_alloc(_ member: OpaquePointer?, _ size: Int, _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?)
    -> gallocy_error_t
{
    guard let out else { return CallError.invalidArgument("gallocy_alloc: out is NULL").record() }
    return MemberHandle.call(member) { (m) async throws(MemberError) in
        UInt(bitPattern: try await m.allocate(byteCount: size))
    } store: {
        out.pointee = UnsafeMutableRawPointer(bitPattern: $0)
    }
}

@c @implementation
public func gallocy_free(_ member: OpaquePointer?, _ block: UnsafeMutableRawPointer?) -> gallocy_error_t {
    guard let block else { return CallError.invalidArgument("gallocy_free: the block is NULL").record() }
    let address = UInt(bitPattern: block)
    return MemberHandle.call(member) { (m) async throws(MemberError) in
        try await m.free(UnsafeMutableRawPointer(bitPattern: address)!)
    }
}

@c @implementation
public func gallocy_root(
    _ member: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?
) -> gallocy_error_t {
    guard let out else { return CallError.invalidArgument("gallocy_root: out is NULL").record() }
    let rootName: String
    do throws(CallError) { rootName = try swiftString(name, "the root's name") } catch { return error.record() }
    return MemberHandle.call(member) { (m) async throws(MemberError) in
        try await m.root(named: rootName).map { UInt(bitPattern: $0) }
    } store: {
        out.pointee = $0.flatMap { UnsafeMutableRawPointer(bitPattern: $0) }
    }
}

@c @implementation
public func gallocy_set_root(_ member: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ block: UnsafeRawPointer?)
    -> gallocy_error_t
{
    let rootName: String
    do throws(CallError) { rootName = try swiftString(name, "the root's name") } catch { return error.record() }
    let address = block.map { UInt(bitPattern: $0) }
    return MemberHandle.call(member) { (m) async throws(MemberError) in
        try await m.setRoot(named: rootName, to: address.flatMap { UnsafeRawPointer(bitPattern: $0) })
    }
}

@c @implementation
public func gallocy_root_or_create(
    _ member: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ size: Int, _ initialize: gallocy_initializer_t?,
    _ context: UnsafeMutableRawPointer?, _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?
) -> gallocy_error_t {
    guard let out else { return CallError.invalidArgument("gallocy_root_or_create: out is NULL").record() }
    let rootName: String
    do throws(CallError) { rootName = try swiftString(name, "the root's name") } catch { return error.record() }
    // The initializer runs on the task's thread while this one waits; see gallocy_initializer_t.
    let callback = Carried((initialize, context))
    return MemberHandle.call(member) { (m) async throws(MemberError) in
        let block = try await m.root(named: rootName, orCreate: size) { block in
            let (initialize, context) = callback.value
            initialize?(block, context)
        }
        return UInt(bitPattern: block)
    } store: {
        out.pointee = UnsafeMutableRawPointer(bitPattern: $0)
    }
}
