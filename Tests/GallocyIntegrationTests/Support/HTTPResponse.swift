/// One HTTP/1.1 answer, with its body as raw bytes.
struct HTTPResponse: Sendable {
    var status: Int
    var reason: String
    /// Header fields with lowercased names; repeated fields are joined with ", ".
    var headers: [String: String]
    var body: [UInt8]

    var text: String { String(decoding: body, as: UTF8.self) }

    func header(_ name: String) -> String? { headers[name.lowercased()] }

    var isSuccess: Bool { (200..<300).contains(status) }
}
