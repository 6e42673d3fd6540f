// swift-format-ignore-file: AlwaysUseLowerCamelCase

// (the functions carry the C names that gallocy.h declares)
import CGallocyABI
import Gallocy
import Logging

/// What `gallocy_options_t` points at: `MemberOptions` being filled in by setters, plus how long
/// `gallocy_start` waits. Used by one thread at a time (the header's options are not shared).
final class StartOptions {
    var id: UInt64 = 0
    var dataDirectory: String?
    var listen: String?
    var http: String?
    var peers: [UInt64: String] = [:]
    var join = false
    var heapSize: UInt64?
    var secret: [UInt8]?
    var logLevel = "warning"
    var readyTimeout: Duration = .seconds(120)

    /// The options of `Member.start`, once the four required ones are set.
    func memberOptions() throws(CallError) -> MemberOptions {
        func required(_ value: String?, _ setter: String) throws(CallError) -> String {
            guard let value else { throw CallError(GALLOCY_E_INVALID_OPTIONS, "\(setter) was not called") }
            return value
        }
        guard id != 0 else { throw CallError(GALLOCY_E_INVALID_OPTIONS, "gallocy_options_set_id was not called") }
        var options = MemberOptions(
            id: id, dataDirectory: try required(dataDirectory, "gallocy_options_set_data_dir"),
            listen: try required(listen, "gallocy_options_set_listen"),
            http: try required(http, "gallocy_options_set_http"), peers: peers)
        options.join = join
        options.heapSize = heapSize
        options.secret = secret
        options.logLevel = logLevel
        return options
    }

    static func from(_ pointer: OpaquePointer?) -> StartOptions? {
        pointer.map { Unmanaged<StartOptions>.fromOpaque(UnsafeRawPointer($0)).takeUnretainedValue() }
    }

    /// Runs `change` on the options behind `pointer`, recording what went wrong.
    static func update(
        _ pointer: OpaquePointer?, _ change: (StartOptions) throws(CallError) -> Void
    ) -> gallocy_error_t {
        guard let options = from(pointer) else { return CallError.invalidArgument("the options are NULL").record() }
        do throws(CallError) {
            try change(options)
            return GALLOCY_OK
        } catch { return error.record() }
    }
}

/// A C string as a Swift string: NULL and bytes that are not UTF-8 are invalid arguments.
func swiftString(_ text: UnsafePointer<CChar>?, _ what: String) throws(CallError) -> String {
    guard let text else { throw CallError.invalidArgument("\(what) is NULL") }
    guard let string = String(validatingCString: text) else { throw CallError.invalidArgument("\(what) is not UTF-8") }
    return string
}

@c @implementation
public func gallocy_options_new() -> OpaquePointer? {
    OpaquePointer(Unmanaged.passRetained(StartOptions()).toOpaque())
}

@c @implementation
public func gallocy_options_free(_ options: OpaquePointer?) {
    guard let options else { return }
    Unmanaged<StartOptions>.fromOpaque(UnsafeRawPointer(options)).release()
}

@c @implementation
public func gallocy_options_set_id(_ options: OpaquePointer?, _ id: UInt64) -> gallocy_error_t {
    StartOptions.update(options) { $0.id = id }
}

@c @implementation
public func gallocy_options_set_data_dir(_ options: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> gallocy_error_t {
    StartOptions.update(options) { (o) throws(CallError) in
        o.dataDirectory = try swiftString(path, "the data directory")
    }
}

@c @implementation
public func gallocy_options_set_listen(_ options: OpaquePointer?, _ address: UnsafePointer<CChar>?) -> gallocy_error_t {
    StartOptions.update(options) { (o) throws(CallError) in o.listen = try swiftString(address, "the listen address") }
}

@c @implementation
public func gallocy_options_set_http(_ options: OpaquePointer?, _ address: UnsafePointer<CChar>?) -> gallocy_error_t {
    StartOptions.update(options) { (o) throws(CallError) in o.http = try swiftString(address, "the HTTP address") }
}

@c @implementation
public func gallocy_options_add_peer(_ options: OpaquePointer?, _ id: UInt64, _ address: UnsafePointer<CChar>?)
    -> gallocy_error_t
{
    StartOptions.update(options) { (o) throws(CallError) in
        o.peers[id] = try swiftString(address, "the address of peer \(id)")
    }
}

@c @implementation
public func gallocy_options_set_join(_ options: OpaquePointer?, _ join: Bool) -> gallocy_error_t {
    StartOptions.update(options) { $0.join = join }
}

@c @implementation
public func gallocy_options_set_heap_size(_ options: OpaquePointer?, _ bytes: UInt64) -> gallocy_error_t {
    StartOptions.update(options) { $0.heapSize = bytes }
}

@c @implementation
public func gallocy_options_set_secret(_ options: OpaquePointer?, _ secret: UnsafeRawPointer?, _ length: Int)
    -> gallocy_error_t
{
    StartOptions.update(options) { (o) throws(CallError) in
        guard let secret, length > 0 else { throw CallError.invalidArgument("the secret is NULL or empty") }
        o.secret = Array(UnsafeRawBufferPointer(start: secret, count: length))
    }
}

@c @implementation
public func gallocy_options_set_log_level(_ options: OpaquePointer?, _ level: UnsafePointer<CChar>?) -> gallocy_error_t
{
    StartOptions.update(options) { (o) throws(CallError) in
        let name = try swiftString(level, "the log level")
        guard Logger.Level(rawValue: name) != nil else {
            throw CallError.invalidArgument(
                "log level \(name) is not one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        o.logLevel = name
    }
}

@c @implementation
public func gallocy_options_set_ready_timeout_ms(_ options: OpaquePointer?, _ milliseconds: UInt64) -> gallocy_error_t {
    StartOptions.update(options) { $0.readyTimeout = .milliseconds(Int64(clamping: milliseconds)) }
}
