extension APIError {
    /// 405: the path exists but not with this method (the answer carries an `Allow` header).
    package static func methodNotAllowed(_ message: String) -> APIError {
        APIError(status: 405, code: "method_not_allowed", message: message)
    }

    /// 503: more calls are in flight than the member takes at once; retrying later is safe.
    package static func overloaded(_ message: String) -> APIError {
        APIError(status: 503, code: "overloaded", message: message)
    }
}
