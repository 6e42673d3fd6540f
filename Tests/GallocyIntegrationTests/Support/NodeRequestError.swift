/// A node answered a request with an error status (contract section 2: a JSON body
/// `{"error": message, "code": word}`).
struct NodeRequestError: Error, Sendable, CustomStringConvertible {
    var method: String
    var path: String
    var status: Int
    /// The `code` word of the body, if the body was the contract's error object.
    var code: String?
    /// The `error` message of the body, or the raw body if it was not JSON.
    var message: String

    /// 503 and 504 (and any other 5xx): the request may or may not have taken effect.
    var isIndeterminate: Bool { status >= 500 }

    var description: String {
        "\(method) \(path): HTTP \(status)" + (code.map { " [\($0)]" } ?? "") + ": \(message)"
    }
}
