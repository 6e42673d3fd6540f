import Gallocy
import Testing

/// Every error status of the contract, each as a JSON `{"error", "code"}` body.
@Suite(.timeLimit(.minutes(1)))
struct HTTPErrorTests {
    private func expectError(
        _ response: HTTPTestResponse, _ status: Int, _ code: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(response.status == status, "\(response.text)", sourceLocation: sourceLocation)
        #expect(response.errorCode == code, "\(response.text)", sourceLocation: sourceLocation)
        #expect(response.object["error"]?.stringValue?.isEmpty == false, sourceLocation: sourceLocation)
        #expect(response.headers["content-type"] == "application/json", sourceLocation: sourceLocation)
    }

    @Test(arguments: [
        "", "{", "{\"size\": }", "{\"size\": 1,}", "[1]", "{\"size\": 1} x", "{'size': 1}", "{\"size\": 01}",
        "{\"size\": 1, \"size\": 2}", "nul",
    ])
    func malformedJSONBodyIs400(body: String) async throws {
        try await withHTTPServer { server, service in
            let response = try await httpRequest(port: server.port, "POST", "/v1/alloc", json: body)
            expectError(response, 400, "bad_request")
            #expect(service.calls.isEmpty)
        }
    }

    @Test(arguments: [
        #"{}"#, #"{"size": null}"#, #"{"size": "12"}"#, #"{"size": -1}"#, #"{"size": 1.5}"#, #"{"size": 1e3}"#,
        #"{"size": 18446744073709551616}"#, #"{"size": true}"#, #"{"sise": 12}"#,
    ])
    func missingOrIllTypedFieldIs400(body: String) async throws {
        try await withHTTPServer { server, service in
            let response = try await httpRequest(port: server.port, "POST", "/v1/alloc", json: body)
            expectError(response, 400, "bad_request")
            #expect(service.calls.isEmpty)
        }
    }

    @Test func illFormedAtomicAndMembershipBodiesAre400() async throws {
        try await withHTTPServer { server, service in
            let bodies: [(String, String)] = [
                ("/v1/atomic/0x1000", #"{"op": "xor", "value": 1}"#),
                ("/v1/atomic/0x1000", #"{"op": "cas", "value": 1}"#),
                ("/v1/atomic/0x1000", #"{"op": "swap", "value": -1}"#),
                ("/v1/atomic/0x1000", #"{"value": 1}"#),
                ("/v1/members", #"{}"#),
                ("/v1/members", #"{"add": {"id": 4, "peer": "127.0.0.1:7004"}, "remove": 3}"#),
                ("/v1/members", #"{"add": {"id": 4, "peer": "no-port"}}"#),
                ("/v1/members", #"{"add": {"id": 4, "peer": "host:70000"}}"#),
                ("/v1/members", #"{"add": 4}"#),
                ("/v1/leader/transfer", #"{"to": "2"}"#),
                ("/v1/locks/a/acquire", #"{"wait_ms": 10}"#),
                ("/v1/locks/a/release", #"{}"#),
                ("/v1/free", #"{"addr": 4096}"#),
                ("/v1/free", #"{"addr": "4096"}"#),
                ("/v1/locks/a%00b/acquire", #"{"ttl_ms": 10}"#),
                ("/v1/locks/%ZZ/acquire", #"{"ttl_ms": 10}"#),
                ("/v1/locks/%FF/acquire", #"{"ttl_ms": 10}"#),
            ]
            for (path, body) in bodies {
                let response = try await httpRequest(port: server.port, "POST", path, json: body)
                expectError(response, 400, "bad_request")
            }
            #expect(service.calls.isEmpty)
        }
    }

    @Test(arguments: [
        "/v1/memory/1000?len=8", "/v1/memory/0x?len=8", "/v1/memory/0xZZ?len=8", "/v1/memory/0x10000000000000000?len=8",
        "/v1/memory/-0x10?len=8", "/v1/memory/0x1000", "/v1/memory/0x1000?len=abc", "/v1/memory/0x1000?len=-1",
        "/v1/memory/0x1000?len=999999999999", "/v1/memory/0x1000?len=1&len=2", "/v1/pages?from=12&count=1",
        "/v1/pages?from=0x0", "/v1/pages?from=0x0&count=1000000000",
    ])
    func badAddressOrLengthInTheTargetIs400(target: String) async throws {
        try await withHTTPServer { server, service in
            let response = try await httpRequest(port: server.port, "GET", target)
            expectError(response, 400, "bad_request")
            #expect(service.calls.isEmpty)
        }
    }

    @Test(arguments: [
        "/", "/v1", "/v1/statuss", "/v1/status/", "/v2/status", "/v1/locks/a/steal", "/v1/memory", "/metrics/x",
    ])
    func unknownPathIs404(target: String) async throws {
        try await withHTTPServer { server, _ in
            let response = try await httpRequest(port: server.port, "GET", target)
            expectError(response, 404, "not_found")
        }
    }

    @Test func knownPathWithAnotherMethodIs405WithAllow() async throws {
        try await withHTTPServer { server, service in
            let post = try await httpRequest(port: server.port, "POST", "/v1/status", body: [])
            expectError(post, 405, "method_not_allowed")
            #expect(post.headers["allow"] == "GET")

            let delete = try await httpRequest(port: server.port, "DELETE", "/v1/memory/0x1000")
            expectError(delete, 405, "method_not_allowed")
            #expect(delete.headers["allow"] == "GET, PUT")

            let get = try await httpRequest(port: server.port, "GET", "/v1/locks/a/acquire")
            expectError(get, 405, "method_not_allowed")
            #expect(get.headers["allow"] == "POST")
            #expect(service.calls.isEmpty)
        }
    }

    @Test func conflictFromTheServiceIs409() async throws {
        try await withHTTPServer { server, _ in
            let first = try await httpRequest(
                port: server.port, "POST", "/v1/locks/l/acquire", json: #"{"ttl_ms": 1000}"#)
            #expect(first.status == 200)
            let second = try await httpRequest(
                port: server.port, "POST", "/v1/locks/l/acquire", json: #"{"ttl_ms": 1000}"#)
            expectError(second, 409, "conflict")
            let staleRelease = try await httpRequest(
                port: server.port, "POST", "/v1/locks/l/release", json: #"{"epoch": 99}"#)
            expectError(staleRelease, 409, "conflict")
        }
    }

    @Test func serviceErrorsKeepTheirStatusAndCode() async throws {
        try await withHTTPServer { server, _ in
            let outside = try await httpRequest(port: server.port, "PUT", "/v1/memory/0x10", body: [1])
            expectError(outside, 400, "bad_request")
            let noMember = try await httpRequest(port: server.port, "POST", "/v1/leader/transfer", json: #"{"to": 9}"#)
            expectError(noMember, 404, "not_found")
        }
    }

    @Test func jsonBodyOverTheLimitIs413AndTheConnectionCloses() async throws {
        try await withHTTPServer { server, service in
            // Declared too large: refused before the body is sent.
            try await HTTPTestConnection.with(port: server.port) { connection in
                try await connection.send(
                    Array("POST /v1/alloc HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n".utf8))
                let response = try #require(try await connection.readResponse())
                expectError(response, 413, "too_large")
                #expect(response.headers["connection"] == "close")
                #expect(try await connection.waitForClose())
            }
            #expect(service.calls.isEmpty)
        }
    }

    @Test func chunkedBodyIs413AsSoonAsItPassesTheLimit() async throws {
        var configuration = HTTPAPIServer.Configuration.loopback
        configuration.maximumJSONBodyBytes = 1024
        try await withHTTPServer(configuration: configuration) { server, service in
            try await HTTPTestConnection.with(port: server.port) { connection in
                try await connection.send(
                    Array("POST /v1/alloc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".utf8))
                let chunk = Array("200\r\n".utf8) + [UInt8](repeating: 0x20, count: 0x200) + Array("\r\n".utf8)
                try await connection.send(chunk)
                try await connection.send(chunk)
                // 1024 bytes so far: at the limit, not past it. The next chunk passes it, and the
                // answer comes without the request ever ending.
                try await connection.send(chunk)
                let response = try #require(try await connection.readResponse())
                expectError(response, 413, "too_large")
                #expect(try await connection.waitForClose())
            }
            #expect(service.calls.isEmpty)
        }
    }

    @Test func memoryWriteOverTheLimitIs413() async throws {
        // The default limit (16 MiB) by declaration alone, then a small configured limit streamed.
        try await withHTTPServer { server, _ in
            try await HTTPTestConnection.with(port: server.port) { connection in
                try await connection.send(
                    Array("PUT /v1/memory/0x1000 HTTP/1.1\r\nHost: x\r\nContent-Length: \((16 << 20) + 1)\r\n\r\n".utf8)
                )
                let response = try #require(try await connection.readResponse())
                expectError(response, 413, "too_large")
            }
            let atLimit = try await httpRequest(
                port: server.port, "PUT", "/v1/memory/0x1000", body: [UInt8](repeating: 1, count: 70_000))
            // Over the JSON limit but under the memory limit: reaches the service (which refuses the range).
            expectError(atLimit, 400, "bad_request")
        }
        var configuration = HTTPAPIServer.Configuration.loopback
        configuration.maximumMemoryBodyBytes = 4096
        try await withHTTPServer(configuration: configuration) { server, service in
            let response = try await httpRequest(
                port: server.port, "PUT", "/v1/memory/0x1000", body: [UInt8](repeating: 1, count: 4097))
            expectError(response, 413, "too_large")
            #expect(service.calls.isEmpty)
            let alloc = try await httpRequest(port: server.port, "POST", "/v1/alloc", json: #"{"size": 4096}"#)
            let addr = try #require(alloc.object["addr"]?.stringValue)
            let exactly = try await httpRequest(
                port: server.port, "PUT", "/v1/memory/\(addr)", body: [UInt8](repeating: 1, count: 4096))
            #expect(exactly.status == 200)
        }
    }

    @Test func serviceSlowerThanTheDeadlineIs504AndTheConnectionStaysUsable() async throws {
        let service = HTTPFakeNodeService(snapshotDelay: .seconds(30))
        var configuration = HTTPAPIServer.Configuration.loopback
        configuration.requestDeadline = .milliseconds(200)
        try await withHTTPServer(service: service, configuration: configuration) {
            server, _ in
            try await HTTPTestConnection.with(port: server.port) { connection in
                let clock = ContinuousClock()
                let start = clock.now
                let response = try await connection.request("POST", "/v1/snapshot")
                let elapsed = clock.now - start
                expectError(response, 504, "timeout")
                #expect(elapsed >= .milliseconds(200))
                #expect(elapsed < .seconds(5))
                let status = try await connection.request("GET", "/v1/status")
                #expect(status.status == 200)
            }
            // The call that lost the race is cancelled, not left running.
            while !service.calls.contains("snapshot cancelled") { try await Task.sleep(for: .milliseconds(5)) }
        }
    }

    @Test func pipelinedCallsEachGetTheirOwnDeadline() async throws {
        let service = HTTPFakeNodeService(snapshotDelay: .seconds(30))
        var configuration = HTTPAPIServer.Configuration.loopback
        configuration.requestDeadline = .milliseconds(400)
        try await withHTTPServer(service: service, configuration: configuration) { server, _ in
            try await HTTPTestConnection.with(port: server.port) { connection in
                let clock = ContinuousClock()
                // A quick call first arms the connection's deadline timer; a slow call started later
                // must still get its full deadline, not the earlier one.
                _ = try await connection.request("GET", "/v1/status")
                try await Task.sleep(for: .milliseconds(200))
                let start = clock.now
                var bytes = HTTPTestConnection.requestBytes("POST", "/v1/snapshot")
                bytes += HTTPTestConnection.requestBytes("GET", "/v1/status")
                bytes += HTTPTestConnection.requestBytes("POST", "/v1/snapshot")
                bytes += HTTPTestConnection.requestBytes("GET", "/v1/status")
                try await connection.send(bytes)
                let first = try #require(try await connection.readResponse())
                expectError(first, 504, "timeout")
                #expect(clock.now - start >= .milliseconds(400))
                let second = try #require(try await connection.readResponse())
                #expect(second.status == 200)
                let third = try #require(try await connection.readResponse())
                expectError(third, 504, "timeout")
                let fourth = try #require(try await connection.readResponse())
                #expect(fourth.status == 200)
                // The two slow calls ran at once.
                #expect(clock.now - start < .seconds(5))
            }
        }
    }

    @Test func clientHangingUpCancelsItsCall() async throws {
        let service = HTTPFakeNodeService(snapshotDelay: .seconds(30))
        try await withHTTPServer(service: service) { server, _ in
            try await HTTPTestConnection.with(port: server.port) { connection in
                try await connection.send(HTTPTestConnection.requestBytes("POST", "/v1/snapshot"))
                while !service.calls.contains("snapshot") { try await Task.sleep(for: .milliseconds(5)) }
            }
            while !service.calls.contains("snapshot cancelled") { try await Task.sleep(for: .milliseconds(5)) }
            let status = try await httpRequest(port: server.port, "GET", "/v1/status")
            #expect(status.status == 200)
        }
    }

    @Test func callsBeyondTheConcurrencyLimitAre503() async throws {
        let service = HTTPFakeNodeService(snapshotDelay: .milliseconds(800))
        var configuration = HTTPAPIServer.Configuration.loopback
        configuration.maximumConcurrentRequests = 1
        try await withHTTPServer(service: service, configuration: configuration) { server, _ in
            try await HTTPTestConnection.with(port: server.port) { slow in
                try await slow.send(HTTPTestConnection.requestBytes("POST", "/v1/snapshot"))
                // Wait until the slow call holds the only slot.
                while !service.calls.contains("snapshot") { try await Task.sleep(for: .milliseconds(5)) }
                let refused = try await httpRequest(port: server.port, "GET", "/v1/status")
                expectError(refused, 503, "overloaded")
                let answer = try #require(try await slow.readResponse())
                #expect(answer.status == 200)
            }
        }
    }
}
