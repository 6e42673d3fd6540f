import Testing

/// The HTTP client against a tiny in-test server.
@Suite struct HTTPClientTests {
    @Test func getReadsAContentLengthBody() throws {
        let server = try TinyHTTPServer { _ in
            .answer(status: 200, headers: ["X-Thing": "1"], body: Array("hello".utf8))
        }
        defer { server.stop() }
        let response = try HTTPClient(port: server.port).request("GET", "/v1/status")
        #expect(response.status == 200)
        #expect(response.text == "hello")
        #expect(response.header("x-thing") == "1")
        #expect(server.requests.first?.path == "/v1/status")
        #expect(server.requests.first?.headers["connection"] == "close")
    }

    @Test func postSendsHeadersAndARawBody() throws {
        let server = try TinyHTTPServer { request in .answer(status: 201, body: request.body) }
        defer { server.stop() }
        let body = (0...255).map { UInt8($0) } + [0, 13, 10, 13, 10]
        let response = try HTTPClient(port: server.port).request(
            "PUT", "/v1/memory/0x1000", headers: [("Content-Type", "application/octet-stream")], body: body)
        #expect(response.status == 201)
        #expect(response.body == body)
        let request = try #require(server.requests.first)
        #expect(request.method == "PUT")
        #expect(request.headers["content-length"] == "\(body.count)")
        #expect(request.headers["content-type"] == "application/octet-stream")
    }

    @Test func emptyPostCarriesContentLengthZero() throws {
        let server = try TinyHTTPServer { _ in .json(200, "{}") }
        defer { server.stop() }
        _ = try HTTPClient(port: server.port).request("POST", "/v1/snapshot")
        #expect(server.requests.first?.headers["content-length"] == "0")
    }

    @Test func chunkedBodyIsJoined() throws {
        let body = Array((0..<5_000).map { UInt8($0 % 251) })
        let server = try TinyHTTPServer { _ in .answer(status: 200, body: body, chunked: true) }
        defer { server.stop() }
        let response = try HTTPClient(port: server.port).request("GET", "/metrics")
        #expect(response.body == body)
    }

    @Test func bodyWithoutLengthRunsUntilClose() throws {
        let server = try TinyHTTPServer { _ in .raw(Array("HTTP/1.1 200 OK\r\nX-A: b\r\n\r\nuntil the end".utf8)) }
        defer { server.stop() }
        let response = try HTTPClient(port: server.port).request("GET", "/")
        #expect(response.text == "until the end")
    }

    @Test func refusedConnectionIsAConnectError() throws {
        let port = try FreePorts.take()
        let error = #expect(throws: TestSupportError.self) {
            _ = try HTTPClient(port: port, timeout: .seconds(2)).request("GET", "/v1/status")
        }
        #expect(error?.code == .connect)
    }

    @Test func silentServerEndsInATimeout() throws {
        let server = try TinyHTTPServer { _ in .silence }
        defer { server.stop() }
        let clock = ContinuousClock()
        let start = clock.now
        let error = #expect(throws: TestSupportError.self) {
            _ = try HTTPClient(port: server.port, timeout: .milliseconds(300)).request("GET", "/")
        }
        #expect(error?.code == .timeout)
        #expect(clock.now - start < .seconds(3))
    }

    @Test func hangUpIsAClosedConnection() throws {
        let server = try TinyHTTPServer { _ in .hangUp }
        defer { server.stop() }
        let error = #expect(throws: TestSupportError.self) {
            _ = try HTTPClient(port: server.port).request("GET", "/")
        }
        #expect(error?.code == .closed)
    }

    @Test func garbageAnswerIsMalformed() throws {
        let server = try TinyHTTPServer { _ in .raw(Array("SSH-2.0-OpenSSH\r\n\r\n".utf8)) }
        defer { server.stop() }
        let error = #expect(throws: TestSupportError.self) {
            _ = try HTTPClient(port: server.port).request("GET", "/")
        }
        #expect(error?.code == .malformed)
    }

    @Test func sendRawReturnsWhateverComesBack() throws {
        let server = try TinyHTTPServer { request in .answer(status: 400, body: Array("bad \(request.method)".utf8)) }
        defer { server.stop() }
        let answer = try HTTPClient(port: server.port).sendRaw(Array("BREW /pot HTTP/1.1\r\n\r\n".utf8))
        let text = String(decoding: answer, as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 400"))
        #expect(text.hasSuffix("bad BREW"))
    }

    @Test func manyConcurrentAsyncRequests() async throws {
        let server = try TinyHTTPServer { request in .answer(status: 200, body: Array(request.path.utf8)) }
        defer { server.stop() }
        let client = HTTPClient(port: server.port)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<32 {
                group.addTask {
                    let response = try await client.send("GET", "/n/\(index)")
                    #expect(response.text == "/n/\(index)")
                }
            }
            try await group.waitForAll()
        }
        #expect(server.requests.count == 32)
    }
}
