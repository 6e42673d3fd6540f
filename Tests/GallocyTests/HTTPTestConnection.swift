import Foundation
import Gallocy
import NIOCore
import NIOPosix

/// One answer as the test client read it off the socket.
struct HTTPTestResponse: Sendable {
    var status: Int
    /// Header names in lowercase.
    var headers: [String: String]
    var body: [UInt8]

    var text: String { String(decoding: body, as: UTF8.self) }

    /// The body parsed with the server's own strict parser (nil if it is not JSON).
    var json: JSONValue? { try? JSONParser.parse(body) }

    /// The members of a JSON object body (empty if the body is not an object).
    var object: [String: JSONValue] { json?.objectValue ?? [:] }

    /// The `code` of a JSON error body.
    var errorCode: String? { object["code"]?.stringValue }
}

/// A raw TCP connection to the server under test, speaking just enough HTTP/1.1 by hand to send
/// any bytes at all (garbage, pipelined requests, partial bodies) and read answers back one by one.
/// Built on NIO's async channel, so it never blocks a thread of the cooperative pool that the fake
/// service also runs on.
final class HTTPTestConnection {
    private var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var received: [UInt8] = []
    private var closed = false

    private init(
        inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) {
        self.inbound = inbound
        self.outbound = outbound
    }

    /// Connects to 127.0.0.1:`port`, runs `body` with the connection, then closes it.
    static func with<Result: Sendable>(
        port: Int, _ body: (HTTPTestConnection) async throws -> Result
    ) async throws -> Result {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            let connection = HTTPTestConnection(inbound: inbound.makeAsyncIterator(), outbound: outbound)
            return try await body(connection)
        }
    }

    /// Sends bytes as they are.
    func send(_ bytes: [UInt8]) async throws {
        try await outbound.write(ByteBuffer(bytes: bytes))
    }

    /// The bytes of one request; `Content-Length` is added when there is a body.
    static func requestBytes(
        _ method: String, _ target: String, body: [UInt8]? = nil, headers: [(String, String)] = []
    ) -> [UInt8] {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if let body { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        return Array(head.utf8) + (body ?? [])
    }

    /// Sends one request and reads its answer.
    func request(
        _ method: String, _ target: String, body: [UInt8]? = nil, headers: [(String, String)] = []
    ) async throws -> HTTPTestResponse {
        try await send(Self.requestBytes(method, target, body: body, headers: headers))
        guard let response = try await readResponse() else { throw HTTPTestError.closedBeforeAnswer }
        return response
    }

    /// Sends one request with a JSON body given as text.
    func request(_ method: String, _ target: String, json: String) async throws -> HTTPTestResponse {
        try await request(method, target, body: Array(json.utf8), headers: [("Content-Type", "application/json")])
    }

    /// Reads the next final answer (skipping 1xx interim ones); nil if the server closed the
    /// connection before sending one.
    func readResponse() async throws -> HTTPTestResponse? {
        while true {
            guard let response = try await readOneResponse() else { return nil }
            if response.status >= 200 { return response }
        }
    }

    /// Reads the next answer, including an interim 1xx one.
    func readOneResponse() async throws -> HTTPTestResponse? {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        var headEnd: Int?
        while true {
            headEnd = Self.find(separator, in: received)
            if headEnd != nil { break }
            guard try await receiveMore() else {
                if received.isEmpty { return nil }
                throw HTTPTestError.truncated(String(decoding: received, as: UTF8.self))
            }
        }
        guard let headEnd else { return nil }
        let headText = String(decoding: received[..<headEnd], as: UTF8.self)
        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
            throw HTTPTestError.malformed(headText)
        }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { throw HTTPTestError.malformed(headText) }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers[name] = value
        }
        received.removeFirst(headEnd + separator.count)
        if status < 200 { return HTTPTestResponse(status: status, headers: headers, body: []) }
        if let lengthText = headers["content-length"] {
            guard let length = Int(lengthText) else { throw HTTPTestError.malformed(headText) }
            while received.count < length {
                guard try await receiveMore() else { throw HTTPTestError.truncated("body of \(headText)") }
            }
            let body = Array(received[..<length])
            received.removeFirst(length)
            return HTTPTestResponse(status: status, headers: headers, body: body)
        }
        // No length: the body runs until the server closes.
        while try await receiveMore() {}
        let body = received
        received.removeAll()
        return HTTPTestResponse(status: status, headers: headers, body: body)
    }

    /// Reads until the server closes the connection; true if it did (rather than sending more).
    func waitForClose() async throws -> Bool {
        while try await receiveMore() {}
        return closed
    }

    private func receiveMore() async throws -> Bool {
        guard !closed else { return false }
        do {
            guard let buffer = try await inbound.next() else {
                closed = true
                return false
            }
            received.append(contentsOf: buffer.readableBytesView)
            return true
        } catch {
            // A reset counts as closed: the server may drop a connection it refused.
            closed = true
            return false
        }
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count)
        where haystack[start..<start + needle.count].elementsEqual(needle) {
            return start
        }
        return nil
    }
}

enum HTTPTestError: Error {
    case closedBeforeAnswer
    case truncated(String)
    case malformed(String)
}

/// One request on a fresh connection.
func httpRequest(
    port: Int, _ method: String, _ target: String, body: [UInt8]? = nil, headers: [(String, String)] = []
) async throws -> HTTPTestResponse {
    try await HTTPTestConnection.with(port: port) { connection in
        try await connection.request(method, target, body: body, headers: headers)
    }
}

/// One request with a JSON body (given as text) on a fresh connection.
func httpRequest(port: Int, _ method: String, _ target: String, json: String) async throws -> HTTPTestResponse {
    try await httpRequest(
        port: port, method, target, body: Array(json.utf8), headers: [("Content-Type", "application/json")])
}
