import Foundation
import Synchronization
import Testing

/// The node client's requests and answers against a fake node that speaks the contract.
@Suite struct NodeClientTests {
    @Test func statusDecodesTheContractFields() async throws {
        let server = try TinyHTTPServer { _ in
            .json(
                200,
                #"{"id":2,"role":"follower","term":7,"leader":1,"commit_index":10,"applied_index":9,"last_index":11,"snapshot_index":0,"members":[1,2,3]}"#
            )
        }
        defer { server.stop() }
        let status = try await NodeClient(port: server.port).status()
        #expect(status.id == 2)
        #expect(status.role == "follower")
        #expect(status.term == 7)
        #expect(status.leader == 1)
        #expect(status.commitIndex == 10)
        #expect(status.appliedIndex == 9)
        #expect(status.lastIndex == 11)
        #expect(status.memberIDs == [1, 2, 3])
        #expect(!status.isLeader)
    }

    @Test func statusAcceptsANullLeaderAndMemberObjects() async throws {
        let server = try TinyHTTPServer { _ in
            .json(
                200,
                #"{"id":1,"role":"candidate","term":3,"leader":null,"commit_index":0,"applied_index":0,"last_index":0,"snapshot_index":0,"members":[{"id":3,"peer":"x"},{"id":1}]}"#
            )
        }
        defer { server.stop() }
        let status = try await NodeClient(port: server.port).status()
        #expect(status.leader == nil)
        #expect(status.memberIDs == [1, 3])
    }

    @Test func memoryRequestsFollowTheContract() async throws {
        let stored = Mutex<[UInt8]>([])
        let server = try TinyHTTPServer { request in
            switch (request.method, request.path) {
            case ("POST", "/v1/alloc"): return .json(200, #"{"addr":"0x7f0000001000"}"#)
            case ("PUT", "/v1/memory/0x7f0000001000"):
                stored.withLock { $0 = request.body }
                return .json(200, #"{"index":42}"#)
            case ("GET", "/v1/memory/0x7f0000001000?len=8"): return .answer(status: 200, body: stored.withLock { $0 })
            case ("POST", "/v1/free"): return .json(200, "{}")
            default: return .json(404, #"{"error":"no","code":"not_found"}"#)
            }
        }
        defer { server.stop() }
        let client = NodeClient(port: server.port)
        let address = try await client.alloc(size: 64)
        #expect(address == 0x7f00_0000_1000)
        #expect(try await client.putWord(address, 0x0102_0304_0506_0708) == 42)
        #expect(stored.withLock { $0 } == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(try await client.getWord(address) == 0x0102_0304_0506_0708)
        try await client.free(address)
        let requests = server.requests
        #expect(requests[0].text == #"{"size":64}"#)
        #expect(requests.last?.text == #"{"addr":"0x7f0000001000"}"#)
    }

    @Test func atomicsSendFullUnsignedWords() async throws {
        let server = try TinyHTTPServer { _ in .json(200, #"{"ok":false,"old":18446744073709551615}"#) }
        defer { server.stop() }
        let client = NodeClient(port: server.port)
        let answer = try await client.compareAndSwap(0x1000, expect: UInt64.max - 1, value: UInt64.max)
        #expect(answer == .init(ok: false, old: UInt64.max))
        _ = try await client.add(0x1000, 5)
        _ = try await client.swap(0x1000, 6)
        let bodies = try server.requests.map { try JSONDecoder().decode(JSONValue.self, from: Data($0.body)) }
        #expect(server.requests.allSatisfy { $0.path == "/v1/atomic/0x1000" })
        #expect(bodies[0]["op"] == .string("cas"))
        #expect(bodies[0]["expect"]?.unsigned == UInt64.max - 1)
        #expect(bodies[0]["value"]?.unsigned == UInt64.max)
        #expect(bodies[1]["op"] == .string("add"))
        #expect(bodies[1]["value"]?.unsigned == 5)
        #expect(bodies[2]["op"] == .string("swap"))
    }

    @Test func locksMembersAndLeadershipBodies() async throws {
        let server = try TinyHTTPServer { request in
            request.path.hasSuffix("/acquire") ? .json(200, #"{"epoch":9}"#) : .json(200, "{}")
        }
        defer { server.stop() }
        let client = NodeClient(port: server.port)
        #expect(try await client.acquireLock("jobs", ttlMilliseconds: 500, waitMilliseconds: 100) == 9)
        try await client.releaseLock("jobs", epoch: 9)
        try await client.addMember(id: 4, peer: "127.0.0.1:9")
        try await client.removeMember(id: 4)
        try await client.transferLeadership(to: 2)
        let requests = server.requests
        #expect(
            requests.map(\.path) == [
                "/v1/locks/jobs/acquire", "/v1/locks/jobs/release", "/v1/members", "/v1/members", "/v1/leader/transfer",
            ])
        let bodies = try requests.map { try JSONDecoder().decode(JSONValue.self, from: Data($0.body)) }
        #expect(bodies[0]["ttl_ms"]?.integer == 500)
        #expect(bodies[0]["wait_ms"]?.integer == 100)
        #expect(bodies[1]["epoch"]?.integer == 9)
        #expect(bodies[2]["add"]?["id"]?.integer == 4)
        #expect(bodies[2]["add"]?["peer"] == .string("127.0.0.1:9"))
        #expect(bodies[3]["remove"]?.integer == 4)
        #expect(bodies[4]["to"]?.integer == 2)
    }

    @Test func pagesSnapshotAndMetrics() async throws {
        let server = try TinyHTTPServer { request in
            switch request.path {
            case "/v1/snapshot": return .json(200, #"{"index":77}"#)
            case "/metrics":
                return .answer(
                    status: 200, body: Array("# HELP x\ngallocy_term 4\ngallocy_commit_index{node=\"1\"} 12\n".utf8))
            default: return .json(200, #"[{"page":"0x1000","version":3},{"page":"0x2000","version":1}]"#)
            }
        }
        defer { server.stop() }
        let client = NodeClient(port: server.port)
        let rows = try await client.pages(from: 0x1000, count: 2)
        #expect(rows.count == 2)
        #expect(rows[0]["version"]?.integer == 3)
        #expect(server.requests[0].path == "/v1/pages?from=0x1000&count=2")
        #expect(try await client.snapshot() == 77)
        let metrics = try await client.metrics()
        #expect(NodeClient.metricValue("gallocy_term", in: metrics) == 4)
        #expect(NodeClient.metricValue("gallocy_commit_index", in: metrics) == 12)
        #expect(NodeClient.metricValue("gallocy", in: metrics) == nil)
    }

    @Test func errorAnswersBecomeNodeRequestErrors() async throws {
        let server = try TinyHTTPServer { _ in .json(409, #"{"error":"lease taken over","code":"conflict"}"#) }
        defer { server.stop() }
        let error = await #expect(throws: NodeRequestError.self) {
            try await NodeClient(port: server.port).releaseLock("a", epoch: 1)
        }
        #expect(error?.status == 409)
        #expect(error?.code == "conflict")
        #expect(error?.message == "lease taken over")
        #expect(error?.isIndeterminate == false)
    }

    @Test func outcomesSayWhetherAWriteMayHaveHappened() async throws {
        func outcome(_ reply: TinyHTTPServer.Reply) async throws -> OperationOutcome<UInt64> {
            let server = try TinyHTTPServer { _ in reply }
            defer { server.stop() }
            let client = NodeClient(port: server.port, timeout: .milliseconds(500))
            let result: Result<UInt64, any Error>
            do { result = .success(try await client.put(0x1000, [1])) } catch { result = .failure(error) }
            return NodeClient.outcome(of: result) { $0 }
        }
        #expect(try await outcome(.json(200, #"{"index":5}"#)) == .ok(5))
        #expect(try await outcome(.json(400, #"{"error":"outside","code":"bad_request"}"#)) == .failed)
        #expect(try await outcome(.json(503, #"{"error":"no quorum","code":"unavailable"}"#)) == .unknown)
        #expect(try await outcome(.json(504, #"{"error":"timed out","code":"timeout"}"#)) == .unknown)
        #expect(try await outcome(.hangUp) == .unknown)
        #expect(try await outcome(.silence) == .unknown)
        // A request that could not even connect never reached a node.
        let port = try FreePorts.take()
        let refused: Result<UInt64, any Error>
        do { refused = .success(try await NodeClient(port: port).put(0x1000, [1])) } catch { refused = .failure(error) }
        #expect(NodeClient.outcome(of: refused) { $0 } == .failed)
    }

    @Test func hexAddresses() {
        #expect(NodeClient.hex(0x7f00_0000_1000) == "0x7f0000001000")
        #expect(NodeClient.parseHex("0x7f0000001000") == 0x7f00_0000_1000)
        #expect(NodeClient.parseHex("ff") == 255)
        #expect(NodeClient.parseHex("0xzz") == nil)
    }
}
