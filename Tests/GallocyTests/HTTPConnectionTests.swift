import Gallocy
import NIOCore
import Prometheus
import Testing

/// The connection-level behaviour: binding, garbage on the socket, keep-alive, pipelining,
/// interim 100-continue answers and graceful shutdown.
@Suite(.timeLimit(.minutes(1)))
struct HTTPConnectionTests {
    @Test func portZeroBindsAFreePortAndReportsIt() async throws {
        try await withHTTPServer { server, _ in
            #expect(server.port > 0)
            #expect(server.localAddress.port == server.port)
        }
    }

    @Test(arguments: [
        "\u{0}\u{1}\u{2}garbage\r\n\r\n", "NOT-A-METHOD\r\n\r\n",
        "GET /v1/status HTTP/1.1\r\nBad Header Line\r\n\r\n", "POST /v1/alloc HTTP/1.1\r\nContent-Length: x\r\n\r\n",
    ])
    func garbageGets400AndCloseWhileTheServerStaysUp(garbage: String) async throws {
        try await withHTTPServer { server, _ in
            try await HTTPTestConnection.with(port: server.port) { connection in
                try await connection.send(Array(garbage.utf8))
                if let response = try await connection.readResponse() {
                    #expect(response.status == 400)
                    #expect(response.errorCode == "bad_request")
                }
                #expect(try await connection.waitForClose())
            }
            let next = try await httpRequest(port: server.port, "GET", "/v1/status")
            #expect(next.status == 200)
        }
    }

    @Test func randomBytesNeverTakeTheServerDown() async throws {
        try await withHTTPServer { server, _ in
            var generator = SystemRandomNumberGenerator()
            for round in 0..<20 {
                let bytes = (0..<(64 + round * 16)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                try await HTTPTestConnection.with(port: server.port) { connection in
                    try await connection.send(bytes)
                    _ = try await connection.waitForClose()
                }
            }
            let next = try await httpRequest(port: server.port, "GET", "/v1/status")
            #expect(next.status == 200)
        }
    }

    @Test func keepAliveServesSeveralRequestsOnOneConnection() async throws {
        try await withHTTPServer { server, _ in
            try await HTTPTestConnection.with(port: server.port) { connection in
                let alloc = try await connection.request("POST", "/v1/alloc", json: #"{"size": 16}"#)
                let addr = try #require(alloc.object["addr"]?.stringValue)
                for value: UInt8 in 1...5 {
                    let write = try await connection.request("PUT", "/v1/memory/\(addr)", body: [value])
                    #expect(write.status == 200)
                    #expect(write.headers["connection"] != "close")
                    let read = try await connection.request("GET", "/v1/memory/\(addr)?len=1")
                    #expect(read.body == [value])
                }
                // Errors keep the connection too.
                let missing = try await connection.request("GET", "/nope")
                #expect(missing.status == 404)
                let status = try await connection.request("GET", "/v1/status")
                #expect(status.status == 200)
            }
        }
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        let service = HTTPFakeNodeService(snapshotDelay: .milliseconds(100))
        try await withHTTPServer(service: service) { server, _ in
            try await HTTPTestConnection.with(port: server.port) { connection in
                // The slow one first: a later, quicker answer must still wait its turn.
                var bytes = HTTPTestConnection.requestBytes("POST", "/v1/snapshot")
                bytes += HTTPTestConnection.requestBytes("GET", "/v1/status")
                bytes += HTTPTestConnection.requestBytes("GET", "/nope")
                bytes += HTTPTestConnection.requestBytes("POST", "/v1/alloc", body: Array(#"{"size": 8}"#.utf8))
                bytes += HTTPTestConnection.requestBytes("GET", "/metrics")
                try await connection.send(bytes)

                let snapshot = try #require(try await connection.readResponse())
                #expect(snapshot.object["index"] == .uint(100))
                let status = try #require(try await connection.readResponse())
                #expect(status.object["role"] == .string("leader"))
                let missing = try #require(try await connection.readResponse())
                #expect(missing.status == 404)
                let alloc = try #require(try await connection.readResponse())
                #expect(alloc.object["addr"] != nil)
                let metrics = try #require(try await connection.readResponse())
                #expect(metrics.text.contains("gallocy_term"))
            }
        }
    }

    @Test func pipelinedCallsRunAtOnceAndAreAnsweredInOrderWithErrorsInTheMiddle() async throws {
        let service = HTTPFakeNodeService(snapshotDelay: .milliseconds(800))
        try await withHTTPServer(service: service) { server, _ in
            let alloc = try await httpRequest(port: server.port, "POST", "/v1/alloc", json: #"{"size": 16}"#)
            let addr = try #require(alloc.object["addr"]?.stringValue)
            try await HTTPTestConnection.with(port: server.port) { connection in
                // All in one write: three slow calls, writes, errors of every kind in between.
                var bytes: [UInt8] = []
                for _ in 0..<3 { bytes += HTTPTestConnection.requestBytes("POST", "/v1/snapshot") }
                bytes += HTTPTestConnection.requestBytes("PUT", "/v1/memory/\(addr)", body: [7])
                bytes += HTTPTestConnection.requestBytes("PUT", "/v1/memory/0x10", body: [1])  // 400: not allocated
                bytes += HTTPTestConnection.requestBytes("GET", "/nope")  // 404
                bytes += HTTPTestConnection.requestBytes("POST", "/v1/alloc", body: Array("{".utf8))  // 400: bad JSON
                bytes += HTTPTestConnection.requestBytes("DELETE", "/v1/status")  // 405
                bytes += HTTPTestConnection.requestBytes("GET", "/v1/status")
                let clock = ContinuousClock()
                let start = clock.now
                try await connection.send(bytes)
                for _ in 0..<3 {
                    let snapshot = try #require(try await connection.readResponse())
                    #expect(snapshot.status == 200)
                    #expect(snapshot.object["index"] != nil)
                }
                // The three slow calls ran at once, not one after the other (2.4 s).
                #expect(clock.now - start < .milliseconds(2000))
                let write = try #require(try await connection.readResponse())
                #expect(write.status == 200)
                #expect(write.object["index"] != nil)
                let outside = try #require(try await connection.readResponse())
                #expect(outside.status == 400)
                let missing = try #require(try await connection.readResponse())
                #expect(missing.status == 404)
                let badJSON = try #require(try await connection.readResponse())
                #expect(badJSON.status == 400)
                let wrongMethod = try #require(try await connection.readResponse())
                #expect(wrongMethod.status == 405)
                #expect(wrongMethod.headers["allow"] != nil)
                let status = try #require(try await connection.readResponse())
                #expect(status.object["role"] == .string("leader"))
                // The connection is still good.
                let read = try await connection.request("GET", "/v1/memory/\(addr)?len=1")
                #expect(read.body == [7])
            }
        }
    }

    @Test func pipelinedRequestsBeyondTheCapWaitTheirTurn() async throws {
        let service = HTTPFakeNodeService(snapshotDelay: .milliseconds(50))
        var configuration = HTTPAPIServer.Configuration.loopback
        configuration.maximumPipelinedRequests = 2
        try await withHTTPServer(service: service, configuration: configuration) { server, _ in
            try await HTTPTestConnection.with(port: server.port) { connection in
                var bytes: [UInt8] = []
                for k in 0..<40 {
                    bytes += HTTPTestConnection.requestBytes(k % 2 == 0 ? "POST" : "GET", k % 2 == 0 ? "/v1/snapshot" : "/v1/status")
                }
                try await connection.send(bytes)
                for k in 0..<40 {
                    let response = try #require(try await connection.readResponse())
                    #expect(response.status == 200)
                    #expect((response.object["role"] != nil) == (k % 2 == 1), "answer \(k)")
                }
            }
        }
    }

    @Test func oversizedBodyInAPipelineIsAnsweredAfterTheEarlierOnesThenCloses() async throws {
        let service = HTTPFakeNodeService(snapshotDelay: .milliseconds(200))
        var configuration = HTTPAPIServer.Configuration.loopback
        configuration.maximumJSONBodyBytes = 64
        try await withHTTPServer(service: service, configuration: configuration) { server, _ in
            try await HTTPTestConnection.with(port: server.port) { connection in
                var bytes = HTTPTestConnection.requestBytes("POST", "/v1/snapshot")
                bytes += HTTPTestConnection.requestBytes("GET", "/v1/status")
                bytes += HTTPTestConnection.requestBytes("POST", "/v1/alloc", body: Array(repeating: 0x20, count: 100))
                bytes += HTTPTestConnection.requestBytes("GET", "/v1/status")
                try await connection.send(bytes)
                let snapshot = try #require(try await connection.readResponse())
                #expect(snapshot.object["index"] != nil)
                let status = try #require(try await connection.readResponse())
                #expect(status.object["role"] != nil)
                let tooLarge = try #require(try await connection.readResponse())
                #expect(tooLarge.status == 413)
                #expect(tooLarge.headers["connection"] == "close")
                #expect(try await connection.waitForClose())
            }
        }
    }

    @Test func manyClientsAtOnceEachGetTheirOwnAnswers() async throws {
        try await withHTTPServer { server, _ in
            let alloc = try await httpRequest(port: server.port, "POST", "/v1/alloc", json: #"{"size": 8}"#)
            let addr = try #require(alloc.object["addr"]?.stringValue)
            let clients = 32
            let requestsPerClient = 25
            try await withThrowingTaskGroup(of: Void.self) { group in
                for client in 0..<clients {
                    group.addTask {
                        try await HTTPTestConnection.with(port: server.port) { connection in
                            for request in 0..<requestsPerClient {
                                let add = try await connection.request(
                                    "POST", "/v1/atomic/\(addr)", json: #"{"op": "add", "value": 1}"#)
                                #expect(add.status == 200)
                                // Interleave another endpoint to catch answers crossing connections.
                                let pages = try await connection.request(
                                    "GET", "/v1/pages?from=0x\(String(client * 4096, radix: 16))&count=1")
                                guard case .array(let rows) = pages.json else {
                                    Issue.record("request \(request) of client \(client): \(pages.text)")
                                    return
                                }
                                #expect(rows.first?.objectValue?["page"] == .uint(UInt64(client)))
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let final = try await httpRequest(
                port: server.port, "POST", "/v1/atomic/\(addr)", json: #"{"op": "add", "value": 0}"#)
            #expect(final.object["old"] == .uint(UInt64(clients * requestsPerClient)))
        }
    }

    @Test func http10RequestIsAnsweredAndClosed() async throws {
        try await withHTTPServer { server, _ in
            try await HTTPTestConnection.with(port: server.port) { connection in
                try await connection.send(Array("GET /v1/status HTTP/1.0\r\n\r\n".utf8))
                let response = try #require(try await connection.readResponse())
                #expect(response.status == 200)
                #expect(try await connection.waitForClose())
            }
        }
    }

    @Test func connectionCloseIsHonoured() async throws {
        try await withHTTPServer { server, _ in
            try await HTTPTestConnection.with(port: server.port) { connection in
                let response = try await connection.request("GET", "/v1/status", headers: [("Connection", "close")])
                #expect(response.status == 200)
                #expect(response.headers["connection"] == "close")
                #expect(try await connection.waitForClose())
            }
        }
    }

    @Test func expectContinueGetsAnInterim100BeforeTheBody() async throws {
        try await withHTTPServer { server, _ in
            _ = try await httpRequest(port: server.port, "POST", "/v1/alloc", json: #"{"size": 8}"#)
            try await HTTPTestConnection.with(port: server.port) { connection in
                try await connection.send(
                    Array(
                        "PUT /v1/memory/0x7f0000000000 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
                            .utf8))
                let interim = try #require(try await connection.readOneResponse())
                #expect(interim.status == 100)
                try await connection.send([1, 2, 3])
                let response = try #require(try await connection.readResponse())
                #expect(response.status == 200)
            }
        }
    }

    @Test func rejectedRequestExpectingContinueIsAnsweredAtOnce() async throws {
        try await withHTTPServer { server, _ in
            try await HTTPTestConnection.with(port: server.port) { connection in
                try await connection.send(
                    Array(
                        "PUT /v1/nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n".utf8)
                )
                let response = try #require(try await connection.readResponse())
                #expect(response.status == 404)
                #expect(try await connection.waitForClose())
            }
        }
    }

    @Test func idleConnectionIsClosedAfterTheIdleTimeout() async throws {
        var configuration = HTTPAPIServer.Configuration.loopback
        // Long enough that a loaded machine still gets the first request in before it fires.
        configuration.idleTimeout = .seconds(1)
        try await withHTTPServer(configuration: configuration) { server, _ in
            try await HTTPTestConnection.with(port: server.port) { connection in
                _ = try await connection.request("GET", "/v1/status")
                #expect(try await connection.waitForClose())
            }
            // A head that never ends is not waited for either.
            try await HTTPTestConnection.with(port: server.port) { connection in
                try await connection.send(Array("GET /v1/status HTTP/1.1\r\nHost:".utf8))
                #expect(try await connection.waitForClose())
            }
        }
    }

    @Test func longCallIsNotCutByTheIdleTimeout() async throws {
        // The call outlasts the idle timeout by far; the timeout is still long enough that a loaded
        // machine gets the request in before it fires.
        let service = HTTPFakeNodeService(snapshotDelay: .milliseconds(3000))
        var configuration = HTTPAPIServer.Configuration.loopback
        configuration.idleTimeout = .seconds(1)
        try await withHTTPServer(service: service, configuration: configuration) { server, _ in
            let response = try await httpRequest(port: server.port, "POST", "/v1/snapshot")
            #expect(response.status == 200)
        }
    }

    @Test func answersAreCountedAndTimedPerEndpoint() async throws {
        let registry = PrometheusCollectorRegistry()
        let server = try await HTTPAPIServer.start(
            service: HTTPFakeNodeService(), configuration: .loopback, logger: quietLogger,
            metrics: PrometheusMetricsFactory(registry: registry))
        _ = try await httpRequest(port: server.port, "GET", "/v1/status")
        _ = try await httpRequest(port: server.port, "GET", "/v1/status")
        _ = try await httpRequest(port: server.port, "GET", "/nowhere")
        await server.shutdown()
        var exposition: [UInt8] = []
        registry.emit(into: &exposition)
        let text = String(decoding: exposition, as: UTF8.self)
        #expect(text.contains(#"gallocy_http_requests_total{endpoint="status",status="200"} 2"#), "\(text)")
        #expect(text.contains(#"gallocy_http_requests_total{endpoint="none",status="404"} 1"#), "\(text)")
        #expect(text.contains("gallocy_http_request_duration_seconds"), "\(text)")
    }

    @Test func shutdownLetsTheRequestInFlightFinishAndStopsAccepting() async throws {
        let service = HTTPFakeNodeService(snapshotDelay: .milliseconds(300))
        let server = try await HTTPAPIServer.start(
            service: service, configuration: .init(host: "127.0.0.1", port: 0), logger: quietLogger)
        let port = server.port
        try await HTTPTestConnection.with(port: port) { busy in
            try await HTTPTestConnection.with(port: port) { idle in
                _ = try await idle.request("GET", "/v1/status")
                try await busy.send(HTTPTestConnection.requestBytes("POST", "/v1/snapshot"))
                while !service.calls.contains("snapshot") { try await Task.sleep(for: .milliseconds(5)) }

                await server.shutdown()

                let answer = try #require(try await busy.readResponse())
                #expect(answer.status == 200)
                #expect(answer.object["index"] == .uint(100))
                #expect(answer.headers["connection"] == "close")
                #expect(try await busy.waitForClose())
                #expect(try await idle.waitForClose())
            }
        }
        await #expect(throws: (any Error).self) {
            _ = try await httpRequest(port: port, "GET", "/v1/status")
        }
    }

    @Test func shutdownTwiceIsHarmless() async throws {
        let server = try await HTTPAPIServer.start(
            service: HTTPFakeNodeService(), configuration: .init(host: "127.0.0.1", port: 0), logger: quietLogger)
        try await HTTPTestConnection.with(port: server.port) { idle in
            _ = try await idle.request("GET", "/v1/status")
            async let first: Void = server.shutdown()
            async let second: Void = server.shutdown()
            _ = await (first, second)
            await server.shutdown()
            #expect(try await idle.waitForClose())
        }
    }

    @Test func shutdownIsBoundedByTheGracePeriod() async throws {
        let service = HTTPFakeNodeService(snapshotDelay: .seconds(30))
        var configuration = HTTPAPIServer.Configuration(host: "127.0.0.1", port: 0)
        configuration.shutdownGracePeriod = .milliseconds(200)
        let server = try await HTTPAPIServer.start(service: service, configuration: configuration, logger: quietLogger)
        try await HTTPTestConnection.with(port: server.port) { busy in
            try await busy.send(HTTPTestConnection.requestBytes("POST", "/v1/snapshot"))
            while !service.calls.contains("snapshot") { try await Task.sleep(for: .milliseconds(5)) }
            let clock = ContinuousClock()
            let start = clock.now
            await server.shutdown()
            #expect(clock.now - start < .seconds(5))
            #expect(try await busy.waitForClose())
        }
    }
}
