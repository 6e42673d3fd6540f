import NIOHTTP1

/// A complete answer of the HTTP API: status, content type, extra headers and body. Built off the
/// event loop by `APIResponder` and written on it by `HTTPAPIHandler`.
package struct APIResponse: Sendable {
    package var status: HTTPResponseStatus
    package var contentType: String
    /// Headers besides Content-Type and Content-Length (e.g. `Allow` on a 405).
    package var headers: HTTPHeaders
    package var body: [UInt8]

    package init(status: HTTPResponseStatus, contentType: String, headers: HTTPHeaders = [:], body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.headers = headers
        self.body = body
    }

    /// The content type of the Prometheus text exposition format.
    package static let prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

    /// A JSON answer. The text ends with a newline, so that it prints cleanly from curl.
    package static func json(_ value: JSONValue, status: HTTPResponseStatus = .ok) -> APIResponse {
        APIResponse(status: status, contentType: "application/json", body: value.serialized() + [0x0A])
    }

    /// The empty JSON object `{}` that acknowledges a change.
    package static let done = json(.object([:]))

    /// Raw bytes, as `GET /v1/memory` answers.
    package static func bytes(_ bytes: [UInt8]) -> APIResponse {
        APIResponse(status: .ok, contentType: "application/octet-stream", body: bytes)
    }

    /// An error answer: `{"error": message, "code": code}` with the error's status.
    package static func error(_ error: APIError, headers: HTTPHeaders = [:]) -> APIResponse {
        let body = JSONValue.object(["error": .string(error.message), "code": .string(error.code)])
        var response = json(body, status: HTTPResponseStatus(statusCode: error.status))
        response.headers = headers
        return response
    }
}
