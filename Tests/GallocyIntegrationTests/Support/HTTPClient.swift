#if canImport(Glibc)
    import Glibc
#endif

/// A small blocking HTTP/1.1 client over POSIX sockets, for tests: one connection per request
/// (`Connection: close`), a deadline on the whole exchange, raw bodies, and errors that tell
/// whether the request can have reached the server.
///
/// A connection per request keeps the meaning of a failure plain for linearizability tests: if
/// connecting failed (`TestSupportError.Code.connect`) nothing was sent; any later failure leaves
/// the outcome unknown.
struct HTTPClient: Sendable {
    var host: String
    var port: UInt16
    /// The longest one request may take, from connecting to the last byte of the answer.
    var timeout: Duration

    /// Caps on what a test server may make the client buffer.
    static let maximumHeaderBytes = 64 * 1024
    static let maximumBodyBytes = 256 * 1024 * 1024

    init(host: String = Loopback.host, port: UInt16, timeout: Duration = .seconds(15)) {
        self.host = host
        self.port = port
        self.timeout = timeout
    }

    /// Sends one request and reads the whole answer.
    func request(
        _ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8] = [],
        timeout: Duration? = nil
    ) throws -> HTTPResponse {
        let limit = timeout ?? self.timeout
        let deadline = ContinuousClock.now.advanced(by: limit)
        let fd: Int32
        do {
            fd = try Loopback.connect(host: host, port: port, timeout: limit)
        } catch let error as TestSupportError {
            // Whatever went wrong while connecting, not one byte of the request left.
            throw TestSupportError(.connect, error.message)
        }
        defer { close(fd) }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\n"
        var hasLength = false
        for (name, value) in headers {
            if name.lowercased() == "content-length" { hasLength = true }
            head += "\(name): \(value)\r\n"
        }
        if !hasLength && (!body.isEmpty || ["POST", "PUT", "PATCH"].contains(method)) {
            head += "Content-Length: \(body.count)\r\n"
        }
        head += "\r\n"
        try Loopback.sendAll(fd, Array(head.utf8) + body, timeout: remaining(until: deadline))
        var reader = Reader(fd: fd, deadline: deadline)
        return try reader.readResponse(method: method)
    }

    /// Sends arbitrary bytes and returns whatever comes back until the server closes or `timeout`
    /// passes: for malformed-request tests.
    func sendRaw(_ bytes: [UInt8], timeout: Duration? = nil) throws -> [UInt8] {
        let limit = timeout ?? self.timeout
        let deadline = ContinuousClock.now.advanced(by: limit)
        let fd = try Loopback.connect(host: host, port: port, timeout: limit)
        defer { close(fd) }
        try Loopback.sendAll(fd, bytes, timeout: remaining(until: deadline))
        var answer: [UInt8] = []
        while answer.count < Self.maximumBodyBytes {
            switch Loopback.receive(fd, timeout: remaining(until: deadline)) {
            case .bytes(let chunk): answer += chunk
            case .endOfStream, .timedOut, .failed: return answer
            }
        }
        return answer
    }

    /// `request` on a thread of its own, for async callers.
    func send(
        _ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8] = [],
        timeout: Duration? = nil
    ) async throws -> HTTPResponse {
        let client = self
        let headerList = headers.map { HeaderField(name: $0.0, value: $0.1) }
        return try await BlockingWork.run {
            try client.request(
                method, path, headers: headerList.map { ($0.name, $0.value) }, body: body, timeout: timeout)
        }
    }

    private struct HeaderField: Sendable {
        var name: String
        var value: String
    }
}

private func remaining(until deadline: ContinuousClock.Instant) -> Duration {
    max(ContinuousClock.now.duration(to: deadline), .zero)
}

extension HTTPClient {
    /// Reads one answer from a socket, buffering what came in beyond what was consumed.
    fileprivate struct Reader {
        let fd: Int32
        let deadline: ContinuousClock.Instant
        var buffer: [UInt8] = []
        var closed = false

        init(fd: Int32, deadline: ContinuousClock.Instant) {
            self.fd = fd
            self.deadline = deadline
        }

        /// Reads more bytes into the buffer; false at the end of the stream.
        mutating func fill() throws -> Bool {
            if closed { return false }
            switch Loopback.receive(fd, timeout: remaining(until: deadline)) {
            case .bytes(let chunk):
                buffer += chunk
                return true
            case .endOfStream:
                closed = true
                return false
            case .timedOut:
                throw TestSupportError(
                    .timeout, "no complete answer before the deadline (\(buffer.count) bytes so far)")
            case .failed(let code):
                throw TestSupportError(.closed, "recv: \(Loopback.errorText(code))")
            }
        }

        /// Consumes a line ending in CRLF, without it.
        mutating func line() throws -> String {
            var searched = 0
            while true {
                if buffer.count > 1,
                    let end = (max(searched, 1)..<buffer.count).first(where: {
                        buffer[$0 - 1] == 13 && buffer[$0] == 10
                    })
                {
                    let text = String(decoding: buffer[0..<(end - 1)], as: UTF8.self)
                    buffer.removeFirst(end + 1)
                    return text
                }
                searched = buffer.count
                guard searched <= HTTPClient.maximumHeaderBytes else {
                    throw TestSupportError(
                        .malformed, "a header line longer than \(HTTPClient.maximumHeaderBytes) bytes")
                }
                guard try fill() else { throw TestSupportError(.closed, "connection closed inside the answer's head") }
            }
        }

        mutating func bytes(_ count: Int) throws -> [UInt8] {
            while buffer.count < count {
                guard try fill() else {
                    throw TestSupportError(.closed, "connection closed after \(buffer.count) of \(count) body bytes")
                }
            }
            let result = Array(buffer[0..<count])
            buffer.removeFirst(count)
            return result
        }

        mutating func readResponse(method: String) throws -> HTTPResponse {
            let statusLine = try line()
            let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
                throw TestSupportError(.malformed, "not an HTTP/1.x status line: \(statusLine.prefix(80))")
            }
            var headers: [String: String] = [:]
            for _ in 0..<1_000 {
                let field = try line()
                if field.isEmpty { break }
                guard let colon = field.firstIndex(of: ":") else {
                    throw TestSupportError(.malformed, "header line without a colon: \(field.prefix(80))")
                }
                let name = field[..<colon].lowercased()
                let value = field[field.index(after: colon)...].trimmed(" \t")
                headers[name] = headers[name].map { $0 + ", " + value } ?? value
            }
            let body: [UInt8]
            if method == "HEAD" || status == 204 || status == 304 || (100..<200).contains(status) {
                body = []
            } else if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
                body = try chunkedBody()
            } else if let lengthText = headers["content-length"] {
                guard let length = Int(lengthText), length >= 0, length <= HTTPClient.maximumBodyBytes else {
                    throw TestSupportError(.malformed, "bad Content-Length: \(lengthText)")
                }
                body = try bytes(length)
            } else {
                while try fill() {
                    guard buffer.count <= HTTPClient.maximumBodyBytes else {
                        throw TestSupportError(.malformed, "body longer than \(HTTPClient.maximumBodyBytes) bytes")
                    }
                }
                body = buffer
                buffer = []
            }
            return HTTPResponse(
                status: status, reason: parts.count > 2 ? String(parts[2]) : "", headers: headers, body: body)
        }

        mutating func chunkedBody() throws -> [UInt8] {
            var body: [UInt8] = []
            for _ in 0..<1_000_000 {
                let sizeLine = try line()
                let sizeText = sizeLine.split(separator: ";").first.map(String.init) ?? ""
                guard let size = Int(sizeText.trimmed(" \t"), radix: 16), size >= 0,
                    body.count + size <= HTTPClient.maximumBodyBytes
                else {
                    throw TestSupportError(.malformed, "bad chunk size line: \(sizeLine.prefix(40))")
                }
                if size == 0 {
                    // Trailer fields, up to the empty line.
                    for _ in 0..<1_000 {
                        if try line().isEmpty { break }
                    }
                    return body
                }
                body += try bytes(size)
                guard try line().isEmpty else { throw TestSupportError(.malformed, "chunk not followed by CRLF") }
            }
            throw TestSupportError(.malformed, "too many chunks")
        }
    }
}

extension StringProtocol {
    /// Trims the given characters at both ends; Foundation-free so the reader stays plain Swift.
    fileprivate func trimmed(_ set: String) -> String {
        var slice = Substring(self)
        while let first = slice.first, set.contains(first) { slice.removeFirst() }
        while let last = slice.last, set.contains(last) { slice.removeLast() }
        return String(slice)
    }
}
